//! `meshctl dashboard`: the control plane's service graph page in a local
//! browser, as `istioctl dashboard kiali` opens Kiali.
//!
//! The page and its data are served by the control plane's admin endpoint
//! (`/graph`, `/graph/data`), which listens on loopback. When the admin is
//! reachable from here (a `host:port` target) the command prints the page's
//! address and exits. When it listens inside another network namespace (a
//! namespace-name target), the command runs a forwarder ([`proxy`]) on
//! `127.0.0.1:<port>` that carries the page's requests into that namespace
//! ([`dial`]), prints the local address and serves until Ctrl-C.
pub mod dial;
pub mod proxy;

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::Arc,
};

use anyhow::Context as _;

use crate::target::Target;
use dial::Dialer;

/// What `meshctl dashboard` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The forwarder's local address (loopback only).
    pub address: IpAddr,
    /// The forwarder's local port.
    pub port: u16,
    /// Open the page with `xdg-open`.
    pub browser: bool,
    pub limits: proxy::Limits,
}

/// Runs the command: prints the page's address (and, for a namespace
/// target, forwards until Ctrl-C). Returns what is left to print.
pub fn run(target: &Target, netns_dir: &Path, options: &Options) -> anyhow::Result<String> {
    anyhow::ensure!(
        options.address.is_loopback(),
        "--address {} is not a loopback address: the forwarder exposes the control plane's \
         admin endpoint, which stays on this host",
        options.address
    );
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "meshctl=info".into()),
        )
        .try_init();
    let dialer = Dialer::new(target, netns_dir).context("--control-plane")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Fail now, with advice, rather than in the browser.
        dialer.connect().await.with_context(|| {
            crate::unreachable_hint(
                "control plane",
                target,
                "--control-plane (host:port, or the network namespace it runs in)",
            )
        })?;
        let url = match target {
            Target::Addr(addr) => format!("http://{addr}/graph"),
            Target::Netns(_) => {
                let local = SocketAddr::new(options.address, options.port);
                let listener = tokio::net::TcpListener::bind(local)
                    .await
                    .with_context(|| format!("cannot listen on {local} (pass another --port)"))?;
                let url = format!("http://{local}/graph");
                announce(&url, &dialer, options.browser);
                tokio::select! {
                    () = proxy::serve(listener, Arc::new(dialer), options.limits) => {}
                    signal = tokio::signal::ctrl_c() => {
                        signal.context("waiting for Ctrl-C")?;
                        tracing::info!("Ctrl-C: forwarder stopped");
                    }
                }
                return Ok(String::new());
            }
        };
        announce(&url, &dialer, options.browser);
        Ok(String::new())
    })
}

/// Prints the address at once (a caller may wait for it) and opens it
/// when asked.
fn announce(url: &str, dialer: &Dialer, browser: bool) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{url}");
    let _ = out.flush();
    if let Dialer::Netns { .. } = dialer {
        eprintln!(
            "forwarding to the control plane's admin at {}; Ctrl-C stops",
            dialer.describe()
        );
    }
    if browser {
        open_browser(url);
    }
}

/// `xdg-open <url>`, detached; a missing opener is only a note.
fn open_browser(url: &str) {
    let spawned = std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reaped by a thread so no zombie stays behind.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => eprintln!("cannot run xdg-open ({e}); open {url} yourself"),
    }
}
