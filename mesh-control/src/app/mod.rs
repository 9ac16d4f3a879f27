//! The control plane process: builds the CA, the directory source and the
//! two gRPC listeners from a [`ControlConfig`], then serves until shutdown.
//! `main.rs` only parses the configuration and calls [`run`].
pub mod config;
pub mod logging;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{net::TcpListener, sync::watch};

pub use config::{parse_duration, ControlConfig, LogFormat};

use crate::{
    ca::{self, Ca, ServerNames},
    model::MeshState,
    server::{self, ConnectedProxies, ConvertOptions, ServerOptions},
    source::{self, DirectoryWatch, SourceConfig},
};

/// How long in-flight streams get to close after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A built control plane: everything loaded and both ports bound.
pub struct App {
    pub config: ControlConfig,
    pub ca: Arc<Ca>,
    /// The directory source (state, raw resources, last load error).
    pub source: DirectoryWatch,
    pub proxies: Arc<ConnectedProxies>,
    xds: TcpListener,
    xds_tls: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl App {
    /// Loads the configuration directory, loads (or creates) the CA and
    /// writes the trust bundle, prepares TLS and binds both ports. Any
    /// failure here is a startup error.
    pub async fn build(config: ControlConfig) -> anyhow::Result<App> {
        // The directory first: a bad configuration fails before anything
        // is written to disk.
        let source_config = SourceConfig {
            trust_domain: config.trust_domain.clone(),
            root_namespace: config.root_namespace.clone(),
            cluster_domain: config.cluster_domain.clone(),
        };
        let source =
            source::watch_directory(&config.config_dir, source_config, config.reload_interval)
                .await
                .context("loading the configuration directory")?;

        let (ca, generated) = {
            let (dir, td, ttl) = (
                config.ca_dir.clone(),
                config.trust_domain.clone(),
                config.root_ttl,
            );
            tokio::task::spawn_blocking(move || Ca::load_or_generate(&dir, &td, ttl))
                .await?
                .with_context(|| format!("mesh CA in {}", config.ca_dir.display()))?
        };
        let bundle = config.ca_dir.join(ca::TRUST_BUNDLE_FILE);
        ca.write_trust_bundle(&bundle)
            .context("writing the trust bundle")?;
        tracing::info!(
            dir = %config.ca_dir.display(),
            generated,
            root_expires = %ca.root_not_after(),
            trust_bundle = %bundle.display(),
            "mesh CA ready"
        );
        let ca = Arc::new(ca);

        let names = server_names(&config)?;
        tracing::info!(dns = ?names.dns, ips = ?names.ips, "serving certificate names");
        let tls = ca::server_tls_acceptor(ca.clone(), names, config.server_cert_ttl)
            .context("TLS for the xDS TLS port")?;

        let xds = TcpListener::bind(config.xds_addr)
            .await
            .with_context(|| format!("binding --xds-addr {}", config.xds_addr))?;
        let xds_tls = TcpListener::bind(config.xds_tls_addr)
            .await
            .with_context(|| format!("binding --xds-tls-addr {}", config.xds_tls_addr))?;
        Ok(App {
            config,
            ca,
            source,
            proxies: Arc::new(ConnectedProxies::new()),
            xds,
            xds_tls,
            tls,
        })
    }

    /// The bound plaintext address (port 0 resolved).
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds.local_addr().expect("bound listener")
    }

    /// The bound TLS address (port 0 resolved).
    pub fn xds_tls_addr(&self) -> SocketAddr {
        self.xds_tls.local_addr().expect("bound listener")
    }

    /// The published mesh state.
    pub fn state(&self) -> watch::Receiver<Arc<MeshState>> {
        self.source.state.clone()
    }

    /// Serves both ports until `shutdown` completes (then closes streams
    /// gracefully) or a server fails.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let options = ServerOptions {
            convert: ConvertOptions {
                root_namespace: self.config.root_namespace.clone(),
                ..ConvertOptions::default()
            },
            default_cert_ttl: self.config.cert_ttl,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let signer: Arc<dyn server::CsrSigner> = self.ca.clone();
        let state = self.source.state.clone();
        let mut plain = tokio::spawn(server::serve_listener(
            self.xds,
            None,
            state.clone(),
            signer.clone(),
            self.proxies.clone(),
            options.clone(),
            stopped(stop_rx.clone()),
        ));
        let mut tls = tokio::spawn(server::serve_listener(
            self.xds_tls,
            Some(self.tls),
            state,
            signer,
            self.proxies.clone(),
            options,
            stopped(stop_rx),
        ));
        let failed = tokio::select! {
            () = shutdown => None,
            r = &mut plain => Some(("--xds-addr", r)),
            r = &mut tls => Some(("--xds-tls-addr", r)),
        };
        let _ = stop_tx.send(true);
        if let Some((which, result)) = failed {
            plain.abort();
            tls.abort();
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("the server on {which} stopped")),
                Ok(Err(e)) => Err(e.context(format!("the server on {which} failed"))),
                Err(e) => Err(anyhow::anyhow!("the server on {which} panicked: {e}")),
            };
        }
        tracing::info!("shutting down");
        let drain = async {
            let _ = (&mut plain).await;
            let _ = (&mut tls).await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("streams still open after {SHUTDOWN_GRACE:?}; closing them");
            plain.abort();
            tls.abort();
        }
        self.source.stop();
        Ok(())
    }
}

/// Builds the app and serves until SIGTERM or SIGINT.
pub async fn run(config: ControlConfig) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    tracing::info!(
        xds = %app.xds_addr(),
        xds_tls = %app.xds_tls_addr(),
        config_dir = %app.config.config_dir.display(),
        "mesh-control ready"
    );
    app.run(shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// The serving certificate's names: the in-cluster service names, loopback,
/// the TLS listen address when it is specific, and `--server-san`.
fn server_names(config: &ControlConfig) -> anyhow::Result<ServerNames> {
    let ns = &config.root_namespace;
    let mut names = ServerNames {
        dns: vec![
            format!("mesh-control.{ns}.svc"),
            format!("mesh-control.{ns}.svc.{}", config.cluster_domain),
            "localhost".into(),
        ],
        ips: vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()],
    };
    let listen = config.xds_tls_addr.ip();
    if !listen.is_unspecified() && !names.ips.contains(&listen) {
        names.ips.push(listen);
    }
    for san in &config.server_sans {
        let san = san.trim();
        if san.is_empty() {
            continue;
        }
        match san.parse() {
            Ok(ip) if !names.ips.contains(&ip) => names.ips.push(ip),
            Ok(_) => {}
            Err(_) => {
                let valid = san.len() <= 253
                    && san.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
                    });
                anyhow::ensure!(
                    valid,
                    "--server-san {san:?} is neither an IP address nor a DNS name"
                );
                if !names.dns.iter().any(|d| d == san) {
                    names.dns.push(san.to_string());
                }
            }
        }
    }
    Ok(names)
}
