//! The demo's `meshctl` forwarders, each a child process killed on drop:
//! `meshctl dashboard` forwarding the control plane's `/graph` page out of
//! the underlay namespace (where its admin listens on loopback) to
//! `127.0.0.1:15080` on the host, for a browser ([`Dashboard`]), and the
//! ingress gateway's `meshctl port-forward` ([`crate::demo_ingress`]),
//! both started with [`Forwarder::start`].
use std::{
    io::BufRead as _,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::Context as _;
use mesh_e2e::cluster::Cluster;

/// The forwarder's port on the host.
pub const PORT: u16 = 15080;

/// How long a forwarder may take to print what it serves.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `meshctl` forwarder; killed on drop.
pub struct Forwarder {
    child: Child,
    /// The first lines it printed (what it serves, where).
    pub lines: Vec<String>,
}

impl Forwarder {
    /// Starts `meshctl <args>` (its log in `<log>` in the cluster's
    /// directory) and waits for `lines` lines on its stdout that start
    /// with `prefix`; fails with its log when it exits or stays silent.
    pub fn start(
        c: &Cluster,
        args: &[&str],
        log: &str,
        lines: usize,
        prefix: &str,
    ) -> anyhow::Result<Forwarder> {
        let meshctl = c.bins.agent.with_file_name("meshctl");
        let log_path = c.dir.join(log);
        let log_file = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = Command::new(&meshctl)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", meshctl.display()))?;
        let stdout = child.stdout.take().context("meshctl's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Every line until it exits, so it never blocks on a full pipe.
            for line in std::io::BufReader::new(stdout).lines() {
                let _ = tx.send(line);
            }
        });
        let mut forwarder = Forwarder {
            child,
            lines: vec![],
        };
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while forwarder.lines.len() < lines {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Ok(line)) if line.starts_with(prefix) => {
                    forwarder.lines.push(line.trim().to_string())
                }
                other => {
                    forwarder.stop();
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    anyhow::bail!(
                        "`meshctl {}` printed no {prefix:?} line within {}s ({other:?}); its log: {}",
                        args.join(" "),
                        START_TIMEOUT.as_secs(),
                        log.trim()
                    )
                }
            }
        }
        Ok(forwarder)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `meshctl dashboard`; stopped on drop.
pub struct Dashboard {
    _forwarder: Forwarder,
    /// The page's address, as the forwarder printed it.
    pub url: String,
}

impl Dashboard {
    /// Starts `meshctl --control-plane <underlay> dashboard --port <port>`
    /// (its log in `dashboard.log` in the cluster's directory) and waits
    /// for it to print the page's address.
    pub fn start(c: &Cluster, port: u16) -> anyhow::Result<Dashboard> {
        let port = port.to_string();
        let forwarder = Forwarder::start(
            c,
            &[
                "--control-plane",
                &c.underlay.name,
                "dashboard",
                "--port",
                &port,
            ],
            "dashboard.log",
            1,
            "http://",
        )?;
        Ok(Dashboard {
            url: forwarder.lines[0].clone(),
            _forwarder: forwarder,
        })
    }
}
