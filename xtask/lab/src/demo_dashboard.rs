//! The demo's service graph: `meshctl dashboard` forwarding the control
//! plane's `/graph` page out of the underlay namespace (where its admin
//! listens on loopback) to `127.0.0.1:15080` on the host, for a browser.
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

/// How long `meshctl dashboard` may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `meshctl dashboard`; killed on drop.
pub struct Dashboard {
    child: Child,
    /// The page's address, as the forwarder printed it.
    pub url: String,
}

impl Dashboard {
    /// Starts `meshctl --control-plane <underlay> dashboard --port <port>`
    /// (its log in `dashboard.log` in the cluster's directory) and waits
    /// for it to print the page's address.
    pub fn start(c: &Cluster, port: u16) -> anyhow::Result<Dashboard> {
        let meshctl = c.bins.agent.with_file_name("meshctl");
        let log_path = c.dir.join("dashboard.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = Command::new(&meshctl)
            .args(["--control-plane", &c.underlay.name, "dashboard", "--port"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", meshctl.display()))?;
        let stdout = child.stdout.take().context("meshctl dashboard's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Drain until it exits, so it never blocks on a full pipe.
            for _ in lines {}
        });
        let mut dashboard = Dashboard {
            child,
            url: String::new(),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) if line.starts_with("http://") => {
                dashboard.url = line.trim().to_string();
                Ok(dashboard)
            }
            other => {
                dashboard.stop();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                anyhow::bail!(
                    "meshctl dashboard printed no address within {}s ({other:?}); its log: {}",
                    START_TIMEOUT.as_secs(),
                    log.trim()
                )
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop();
    }
}
