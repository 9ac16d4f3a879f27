//! Startup wiring: certificate, ClusterManager, telemetry, the route stack,
//! the xDS client feeding them, the listeners (a waypoint's HBONE and plain
//! ones, or a gateway's from LDS; admin, probe and metrics for both), and
//! draining on SIGTERM, SIGINT or `/quitquitquit` (`mesh_admin::drain`).
pub mod certs;
pub mod config;
pub mod follow;
pub mod wiring;

use std::sync::{atomic::AtomicBool, Arc};

use anyhow::Context;
use mesh_admin::{drain::Drain, log_control::LogControl};
use mesh_hbone::{
    CertStore, ClientOptions, HboneClient, HboneServer, Identity, ServerOptions, TrustBundle,
};
use mesh_xds::{
    proto::istio_ca::istio_certificate_service_client::IstioCertificateServiceClient, XdsClient,
    XdsClientConfig, XdsTls, ADDRESS_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL,
    LISTENER_TYPE_URL, ROUTE_TYPE_URL,
};
use tokio::{net::TcpListener, task::JoinHandle};

pub use self::config::{Args, Role, WaypointConfig};
pub use self::follow::{follow, follow_gateway};
use self::wiring::{
    ClusterManager, ExternalOptions, Telemetry, TelemetryObserver, TelemetryOptions,
    UpstreamOptions,
};
use crate::{
    admin::{self, AdminState},
    config::ActiveConfig,
    gateway::ListenerManager,
    route::{Deps, Proxy},
    server,
    telemetry::{labels::Reporter, tcp::TcpObserver},
};

/// The types a waypoint subscribes to; ready once each arrived.
pub const TYPE_URLS: [&str; 5] = [
    LISTENER_TYPE_URL,
    ROUTE_TYPE_URL,
    CLUSTER_TYPE_URL,
    ENDPOINT_TYPE_URL,
    ADDRESS_TYPE_URL,
];

fn tls(root_pem: Option<&[u8]>, what: &str) -> anyhow::Result<XdsTls> {
    Ok(XdsTls {
        root_pem: root_pem
            .with_context(|| format!("{what} over https needs --trust-bundle (the mesh root)"))?
            .to_vec(),
        client_cert: None,
        server_name: None,
    })
}

/// Obtains the certificate and builds the HBONE cert store.
async fn cert_store(
    cfg: &WaypointConfig,
    ca_addr: &str,
    identity: &Identity,
    bundle_pem: Option<&[u8]>,
) -> anyhow::Result<Arc<CertStore>> {
    // Bounded, so an unreachable CA shows up as logged retries, not a
    // silent hang.
    let endpoint = tonic::transport::Endpoint::from_shared(ca_addr.to_string())
        .with_context(|| format!("--ca-addr {ca_addr:?}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10));
    tracing::info!(ca = ca_addr, identity = %identity, "requesting the waypoint certificate");
    let channel = if ca_addr.starts_with("https://") {
        let connector = mesh_xds::transport::TlsConnector::new(&tls(bundle_pem, "the CA")?)
            .context("CA TLS settings")?;
        endpoint.connect_with_connector_lazy(connector)
    } else {
        endpoint.connect_lazy()
    };
    let fetcher = certs::CertFetcher {
        identity: identity.clone(),
        ca: IstioCertificateServiceClient::new(channel),
        ttl: cfg.cert_ttl,
        token: cfg.token_file.clone().map(mesh_xds::token::TokenFile::new),
    };
    let (cert, root) = fetcher.first().await;
    let bundle = match (bundle_pem, root) {
        (Some(pem), _) => TrustBundle::from_pem(pem).context("--trust-bundle")?,
        (None, Some(root)) => TrustBundle::from_pem(root).context("the CA's root certificate")?,
        (None, None) => anyhow::bail!("no trust bundle: the CA sent no root; pass --trust-bundle"),
    };
    let store = Arc::new(CertStore::new(bundle));
    store.insert(cert);
    tokio::spawn(fetcher.run(store.clone(), bundle_pem.is_none()));
    Ok(store)
}

/// Runs the waypoint until SIGTERM / SIGINT / `/quitquitquit`, then drains.
pub async fn run(cfg: WaypointConfig, log: Option<Arc<LogControl>>) -> anyhow::Result<()> {
    let identity: Identity = cfg.identity().parse().context("waypoint identity")?;
    let bundle_pem = cfg
        .trust_bundle
        .as_ref()
        .map(|p| {
            std::fs::read(p).with_context(|| format!("reading --trust-bundle {}", p.display()))
        })
        .transpose()?;
    let store = match &cfg.ca_addr {
        Some(ca) => Some(cert_store(&cfg, ca, &identity, bundle_pem.as_deref()).await?),
        None => {
            tracing::warn!("no --ca-addr / --xds-addr: no certificate, HBONE disabled");
            None
        }
    };
    let hbone = store
        .as_ref()
        .map(|s| Arc::new(HboneClient::new(s.clone(), ClientOptions::default())));
    // tcp_proxy chains of a gateway dial as the HTTP pools do.
    let connector = crate::upstream::connector::Connector {
        hbone: hbone.clone(),
        identity: store.as_ref().map(|_| identity.clone()),
    };
    let external = ExternalOptions {
        dns_upstream: cfg.dns_upstream,
        credential_dir: cfg.credential_dir.clone(),
    };
    let clusters = ClusterManager::with_external(
        UpstreamOptions {
            hbone,
            identity: store.as_ref().map(|_| identity.clone()),
        },
        external.clone(),
    );
    // The real TelemetryOptions has more fields (export sizes) than the shim.
    #[allow(clippy::needless_update)]
    let telemetry = Telemetry::new(TelemetryOptions {
        otlp_endpoint: cfg.otlp_endpoint.clone(),
        access_log: cfg.access_log,
        workload_uid: format!("Kubernetes//Pod/{}/{}", cfg.namespace, cfg.pod_name),
        workload_name: cfg.pod_name.clone(),
        namespace: cfg.namespace.clone(),
        canonical_service: cfg.name.clone(),
        node_id: cfg.node_id(),
        reporter: match cfg.role {
            Role::Waypoint => Reporter::Waypoint,
            Role::Gateway => Reporter::Source,
        },
        ..Default::default()
    });
    telemetry.register_upstream(clusters.metrics());
    let mut deps = Deps::new(clusters.clone());
    deps.observer = Arc::new(TelemetryObserver {
        telemetry: telemetry.clone(),
        clusters: clusters.clone(),
    });
    deps.trace = Some(wiring::trace_fn());
    let proxy = Proxy::new(Arc::new(ActiveConfig::default()), deps.clone());
    let drain = Arc::new(Drain::new(cfg.drain_timeout));
    let shutdown_rx = drain.subscribe();
    let synced = Arc::new(AtomicBool::new(false));
    let gateway = (cfg.role == Role::Gateway).then(|| {
        ListenerManager::with_connector(
            deps,
            cfg.credential_dir.clone(),
            shutdown_rx.clone(),
            connector,
            Some(TcpObserver::new(telemetry.clone(), clusters.clone())),
        )
    });

    if let Some(addr) = &cfg.xds_addr {
        let mut xcfg = XdsClientConfig::new(addr.clone(), cfg.node_id());
        xcfg.node_metadata = cfg.node_metadata();
        xcfg.type_urls = TYPE_URLS.iter().map(|t| t.to_string()).collect();
        xcfg.validator = Some(wiring::validator_with(external.clone()));
        xcfg.token = cfg.token_file.clone().map(mesh_xds::token::TokenFile::new);
        if addr.starts_with("https://") {
            xcfg.tls = Some(tls(bundle_pem.as_deref(), "xDS")?);
        }
        let (handle, rx) = XdsClient::spawn(xcfg);
        let follower: futures::future::BoxFuture<'static, ()> = match &gateway {
            Some(listeners) => Box::pin(follow_gateway(
                rx,
                listeners.clone(),
                clusters.clone(),
                synced.clone(),
            )),
            None => Box::pin(follow(
                rx,
                proxy.clone(),
                clusters.clone(),
                synced.clone(),
                cfg.listener_name(),
            )),
        };
        tokio::spawn(async move {
            let _keep_client = handle;
            follower.await;
        });
    } else {
        tracing::warn!(
            "no --xds-addr: no routes (a waypoint answers every request 404 NR; a gateway binds no listener)"
        );
    }

    let (http_done, hbone_done) = match &gateway {
        // A gateway serves only the listeners LDS declares.
        Some(_) => (None, None),
        None => {
            let (http, hbone) =
                waypoint_listeners(&cfg, &proxy, &clusters, store.as_ref(), &drain).await?;
            (Some(http), hbone)
        }
    };

    let admin_listener = TcpListener::bind(cfg.admin_addr)
        .await
        .with_context(|| format!("binding --admin-addr {}", cfg.admin_addr))?;
    let probe_listener = TcpListener::bind(cfg.ready_addr)
        .await
        .with_context(|| format!("binding --ready-addr {}", cfg.ready_addr))?;
    let metrics_listener = TcpListener::bind(cfg.metrics_addr)
        .await
        .with_context(|| format!("binding --metrics-addr {}", cfg.metrics_addr))?;
    let metrics = {
        let t = telemetry.clone();
        move || t.encode_metrics()
    };
    tokio::spawn(admin::probe::serve(
        probe_listener,
        admin::probe::ProbeState {
            synced: synced.clone(),
            draining: shutdown_rx.clone(),
            liveness: {
                let liveness = proxy.liveness();
                Arc::new(move || match liveness.check() {
                    crate::health::Health::Live => Ok(()),
                    crate::health::Health::Broken { recent } => Err(format!(
                        "{recent} request panics within {:?}",
                        crate::health::PANIC_WINDOW
                    )),
                })
            },
        },
    ));
    tokio::spawn(admin::metrics::serve(
        metrics_listener,
        Box::new(metrics.clone()),
    ));
    let state = Arc::new(AdminState {
        proxy: proxy.clone(),
        gateway: gateway.clone(),
        certificates: store.clone(),
        clusters: {
            let c = clusters.clone();
            Box::new(move || c.dump())
        },
        metrics: Box::new(metrics),
        log,
        synced,
        shutdown: Arc::clone(&drain),
    });
    tokio::spawn(admin::serve(admin_listener, state));
    tracing::info!(
        identity = %identity,
        role = ?cfg.role,
        // A gateway's listeners come from LDS.
        http = ?http_done.is_some().then_some(cfg.http_addr),
        hbone = ?hbone_done.is_some().then_some(cfg.hbone_addr),
        admin = %cfg.admin_addr,
        probe = %cfg.ready_addr,
        metrics = %cfg.metrics_addr,
        xds = ?cfg.xds_addr,
        node = %cfg.node_id(),
        "mesh-waypoint started"
    );

    drain.trigger_on_signals();
    drain.triggered().await;
    tracing::info!(drain_secs = drain.timeout().as_secs(), "draining");
    let listeners = async {
        if let Some(h) = http_done {
            let _ = h.await;
        }
        if let Some(h) = hbone_done {
            let _ = h.await;
        }
        if let Some(g) = &gateway {
            g.finished().await;
        }
    };
    let _ = drain.finish(listeners).await;
    tracing::info!("mesh-waypoint stopped");
    Ok(())
}

/// The waypoint's own listeners: plain HTTP on --http-addr and, with a
/// certificate, HBONE on --hbone-addr. Returns their tasks.
async fn waypoint_listeners(
    cfg: &WaypointConfig,
    proxy: &Arc<Proxy>,
    clusters: &Arc<ClusterManager>,
    store: Option<&Arc<CertStore>>,
    drain: &Drain,
) -> anyhow::Result<(JoinHandle<()>, Option<JoinHandle<()>>)> {
    let shutdown_rx = drain.subscribe();
    let http = TcpListener::bind(cfg.http_addr)
        .await
        .with_context(|| format!("binding --http-addr {}", cfg.http_addr))?;
    let http_done = tokio::spawn(server::http::serve(
        http,
        proxy.clone(),
        shutdown_rx.clone(),
    ));

    let mut hbone_done = None;
    if let Some(store) = store {
        let listener = TcpListener::bind(cfg.hbone_addr)
            .await
            .with_context(|| format!("binding --hbone-addr {}", cfg.hbone_addr))?;
        let handler = Arc::new(server::hbone::TunnelHandler::new(
            proxy.clone(),
            clusters.clone(),
            shutdown_rx.clone(),
        ));
        let hserver = HboneServer::new(store.clone(), handler).with_options(ServerOptions {
            drain_timeout: drain.timeout(),
            ..ServerOptions::default()
        });
        let mut stop = shutdown_rx.clone();
        hbone_done = Some(tokio::spawn(async move {
            let stopped = async move { server::stopped(&mut stop).await };
            if let Err(error) = hserver.serve_with_shutdown(listener, stopped).await {
                tracing::error!(%error, "HBONE server stopped");
            }
        }));
    }

    Ok((http_done, hbone_done))
}
