//! The control plane process: builds the CA, the source (directory or
//! Kubernetes), the token authentication, the
//! two gRPC listeners and the admin/readiness listeners from a
//! [`ControlConfig`], then serves until SIGTERM/SIGINT or `/quitquitquit`
//! and drains (`mesh_admin::drain`: readiness off, the gRPC listeners stop,
//! open streams get `--drain-timeout`). `main.rs` only parses the
//! configuration, installs logging and calls [`run`].
pub mod config;
pub mod logging;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use mesh_admin::drain::{drained, Drain, DrainWatch, Reason};
use tokio::{net::TcpListener, sync::watch};

pub use config::{AuthMode, ControlConfig, LogFormat, SourceKind};

use crate::{
    admin::{self, AdminState, Endpoints},
    authn::{AuthPolicy, TokenReviewer},
    ca::{self, Ca, ServerNames},
    graph::{self, GraphService, Scraper},
    model::MeshState,
    serve::{self, ConnectedProxies, ServerOptions},
    source::{self, KubeSourceOptions, SourceConfig, SourceWatch},
    translate::workload::ConvertOptions,
};

/// A built control plane: everything loaded and both ports bound.
pub struct App {
    pub config: ControlConfig,
    pub ca: Arc<Ca>,
    /// The source (state, raw resources, last load error).
    pub source: SourceWatch,
    /// Token authentication of xDS and CA callers (`--authenticate`).
    pub auth: Option<AuthPolicy>,
    pub proxies: Arc<ConnectedProxies>,
    /// Runtime control of the log filter for `/logging`; `None` unless the
    /// caller installed logging with [`logging::init`].
    pub log: Option<Arc<logging::LogControl>>,
    /// Readiness and the drain of the gRPC listeners; SIGTERM, SIGINT,
    /// `/quitquitquit` or the `run` future trigger it.
    pub drain: Arc<Drain>,
    /// The proxies' metrics as scraped for the service graph; `None` with
    /// `--prometheus-url` or `--graph-scrape-interval 0`.
    pub scraper: Option<Arc<Scraper>>,
    xds: TcpListener,
    xds_tls: TcpListener,
    admin: TcpListener,
    ready: TcpListener,
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
        let auth_mode = config.auth_mode();
        if config.exposure()? == config::Exposure::Network {
            tracing::warn!(
                xds_addr = %config.xds_addr,
                xds_tls_addr = %config.xds_tls_addr,
                "UNAUTHENTICATED on a network address (--authenticate none): anyone who \
                 reaches these ports obtains a certificate for any identity of the trust domain"
            );
        }
        let client = if config.source == SourceKind::Kubernetes || auth_mode == AuthMode::Kubernetes
        {
            Some(
                crate::apiserver::kube_client(config.kubeconfig.as_deref())
                    .await
                    .context("Kubernetes client")?,
            )
        } else {
            None
        };
        let source = match (config.source, &client) {
            (SourceKind::Kubernetes, Some(client)) => {
                let options = KubeSourceOptions {
                    initial_list_timeout: config.kube_list_timeout,
                    ..KubeSourceOptions::default()
                };
                source::watch_kubernetes(client.clone(), source_config, options)
                    .await
                    .context("starting the Kubernetes source")?
            }
            _ => {
                let dir = config
                    .config_dir
                    .as_ref()
                    .context("--config-dir is required with --source directory")?;
                source::watch_directory(dir, source_config, config.reload_interval)
                    .await
                    .context("loading the configuration directory")?
            }
        };
        let auth = match (auth_mode, client) {
            (AuthMode::Kubernetes, Some(client)) => {
                tracing::info!(
                    audience = %config.token_audience,
                    trusted_node_accounts = ?config.node_agent_accounts,
                    cluster_id = %config.cluster_id,
                    "callers authenticate with ServiceAccount tokens (TokenReview)"
                );
                Some(AuthPolicy {
                    authenticator: Arc::new(TokenReviewer::new(client, &config.token_audience)),
                    node_agents: config.node_agent_accounts.clone(),
                    trust_domain: config.trust_domain.clone(),
                })
            }
            _ => {
                tracing::warn!(
                    "--authenticate none: any caller may obtain any identity of the trust domain"
                );
                None
            }
        };

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
        let admin = TcpListener::bind(config.admin_addr)
            .await
            .with_context(|| format!("binding --admin-addr {}", config.admin_addr))?;
        let ready = TcpListener::bind(config.ready_addr)
            .await
            .with_context(|| format!("binding --ready-addr {}", config.ready_addr))?;
        let scraper = match (
            &config.prometheus_url,
            config.graph_scrape_interval.is_zero(),
        ) {
            (Some(url), _) => {
                tracing::info!(%url, "service graph reads Prometheus");
                None
            }
            (None, true) => {
                tracing::info!("service graph scraping disabled (--graph-scrape-interval 0)");
                None
            }
            (None, false) => {
                tracing::info!(
                    interval = ?config.graph_scrape_interval,
                    extra_targets = ?config.graph_scrape_targets,
                    "service graph scrapes the connected proxies' metrics"
                );
                Some(Arc::new(Scraper::new()))
            }
        };
        Ok(App {
            scraper,
            drain: Arc::new(Drain::new(config.drain_timeout)),
            config,
            ca,
            source,
            auth,
            proxies: Arc::new(ConnectedProxies::new()),
            log: None,
            xds,
            xds_tls,
            admin,
            ready,
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

    /// The bound admin address (port 0 resolved).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener")
    }

    /// The bound readiness address (port 0 resolved).
    pub fn ready_addr(&self) -> SocketAddr {
        self.ready.local_addr().expect("bound listener")
    }

    /// The published mesh state.
    pub fn state(&self) -> watch::Receiver<Arc<MeshState>> {
        self.source.state.clone()
    }

    /// What `/graph/data` reads: Prometheus when configured, else the
    /// scrapes (empty when scraping is disabled).
    pub fn graph_service(&self) -> GraphService {
        let source = match (&self.config.prometheus_url, &self.scraper) {
            (Some(url), _) => graph::Source::Prometheus(url.clone()),
            (None, Some(scraper)) => graph::Source::Scrape(scraper.clone()),
            (None, None) => graph::Source::Scrape(Arc::new(Scraper::new())),
        };
        GraphService {
            source,
            state: self.source.state.clone(),
        }
    }

    /// Serves all ports until `shutdown` completes, `/quitquitquit` is
    /// posted or [`App::drain`] is triggered (then drains the streams and
    /// returns `Ok`), or a gRPC server fails.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let options = ServerOptions {
            convert: ConvertOptions {
                root_namespace: self.config.root_namespace.clone(),
                cluster_id: self.config.cluster_id.clone(),
                ..ConvertOptions::default()
            },
            default_cert_ttl: self.config.cert_ttl,
            auth: self.auth.clone(),
            resources: None,
        };
        // One translation per change for both ports.
        let (resources, builder) = serve::resources::spawn_builder(
            self.source.state.clone(),
            options.convert.clone(),
            self.proxies.clone(),
        );
        let _builder = AbortOnDrop(builder);
        let options = ServerOptions {
            resources: Some(resources),
            ..options
        };
        let drain = Arc::clone(&self.drain);
        let stopped = |mut rx: DrainWatch| async move { drained(&mut rx).await };
        let (quit_tx, mut quit_rx) = watch::channel(false);
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let admin_state = Arc::new(AdminState {
            proxies: self.proxies.clone(),
            state: self.source.state.clone(),
            raw: self.source.raw.clone(),
            last_error: self.source.last_error.clone(),
            convert: options.convert.clone(),
            log: self.log.clone(),
            ready: drain.readiness(),
            quit: quit_tx,
            graph: Some(self.graph_service()),
        });
        // The admin endpoints outlive the gRPC servers' drain, so readiness
        // reports 503 and syncz shows streams going away while stopping.
        let admin_tasks = [
            tokio::spawn(admin::serve(
                self.admin,
                admin_state.clone(),
                Endpoints::Admin,
                stopped(admin_stop_rx.clone()),
            )),
            tokio::spawn(admin::serve(
                self.ready,
                admin_state,
                Endpoints::Ready,
                stopped(admin_stop_rx),
            )),
        ];
        let scraper = self.scraper.clone().map(|scraper| {
            tokio::spawn(graph::run_scraper(
                scraper,
                self.proxies.clone(),
                self.config.graph_scrape_targets.clone(),
                self.config.graph_scrape_interval,
            ))
        });
        let signer: Arc<dyn serve::CsrSigner> = self.ca.clone();
        let state = self.source.state.clone();
        let mut plain = tokio::spawn(serve::serve_listener(
            self.xds,
            None,
            state.clone(),
            signer.clone(),
            self.proxies.clone(),
            options.clone(),
            stopped(drain.subscribe()),
        ));
        let mut tls = tokio::spawn(serve::serve_listener(
            self.xds_tls,
            Some(self.tls),
            state,
            signer,
            self.proxies.clone(),
            options,
            stopped(drain.subscribe()),
        ));
        // Both listeners were bound in `build` and the state is loaded.
        drain.set_ready();
        // Biased: a signal stops the gRPC servers through the drain, so when
        // they end the trigger is already there and must win over them.
        let failed = tokio::select! {
            biased;
            _ = drain.triggered() => None,
            () = shutdown => None,
            _ = quit_rx.wait_for(|quit| *quit) => None,
            r = &mut plain => Some(("--xds-addr", r)),
            r = &mut tls => Some(("--xds-tls-addr", r)),
        };
        // A signal set its own reason first; any other stop is a quit.
        drain.trigger(Reason::Quit);
        let stop_admin = || async {
            if let Some(scraper) = &scraper {
                scraper.abort();
            }
            let _ = admin_stop_tx.send(true);
            for task in admin_tasks {
                let _ = task.await;
            }
        };
        if let Some((which, result)) = failed {
            plain.abort();
            tls.abort();
            stop_admin().await;
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("the server on {which} stopped")),
                Ok(Err(e)) => Err(e.context(format!("the server on {which} failed"))),
                Err(e) => Err(anyhow::anyhow!("the server on {which} panicked: {e}")),
            };
        }
        tracing::info!(timeout = ?drain.timeout(), "shutting down");
        let streams = async {
            let _ = (&mut plain).await;
            let _ = (&mut tls).await;
        };
        if drain.finish(streams).await.is_none() {
            tracing::warn!(
                "streams still open after {:?}; closing them",
                drain.timeout()
            );
            plain.abort();
            tls.abort();
        }
        stop_admin().await;
        self.source.stop();
        Ok(())
    }
}

/// Aborts the task when dropped: the shared resource builder ends with
/// [`App::run`], however it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds the app and serves until SIGTERM, SIGINT or `/quitquitquit`.
/// `log` is the handle [`logging::init`] returned, for `/logging`.
pub async fn run(config: ControlConfig, log: Option<logging::LogControl>) -> anyhow::Result<()> {
    let mut app = App::build(config).await?;
    app.log = log.map(Arc::new);
    tracing::info!(
        xds = %app.xds_addr(),
        xds_tls = %app.xds_tls_addr(),
        admin = %app.admin_addr(),
        ready = %app.ready_addr(),
        source = ?app.config.source,
        authenticate = app.auth.is_some(),
        "mesh-control ready"
    );
    app.drain.trigger_on_signals();
    app.run(std::future::pending()).await
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

#[cfg(test)]
mod tests;
