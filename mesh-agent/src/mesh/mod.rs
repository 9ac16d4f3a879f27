//! The mesh side of the agent, active when a control plane is configured:
//! [`start`] connects to xDS and keeps the view (crate::state) current,
//! fetches and renews workload certificates (certs/, ca_client.rs), keeps
//! the kernel's policy maps in line with the view (policy_sync.rs) and
//! serves inbound HBONE (hop ④, crate::inbound): on each enrolled pod's
//! address inside its network namespace (crate::inbound::pods), and on the
//! node address for peers that still name the pod in SNI.
pub mod ca_client;
pub mod certs;
pub mod node_identity;
pub mod policy_sync;

use std::{
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use mesh_hbone::{CertStore, ClientOptions, HboneClient, HboneServer, ServerOptions, TrustBundle};
use mesh_xds::{XdsClient, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL};
use tokio::sync::watch;

use self::policy_sync::PolicySync;

use crate::{
    capture::{
        deny::KernelDenies, enroll::Enroller, pins::PinLayout, probes::ProbePorts,
        strict::StrictPods,
    },
    config::{AgentConfig, MeshConfig},
    inbound::hbone::InboundHandler,
    outbound::proxy::ProxySettings,
    policy::live::LiveConnections,
    shutdown::Shutdown,
    state::{connections::ConnectionStats, inputs::ProxyInputs, runtime::MeshRuntime, xds},
};

/// Whether a configured control-plane or CA address asks for TLS (its URI
/// scheme is `https`).
fn uses_tls(address: &str) -> bool {
    address
        .parse::<http::Uri>()
        .is_ok_and(|uri| uri.scheme() == Some(&http::uri::Scheme::HTTPS))
}

/// Starts everything the mesh side needs and returns what the outbound
/// proxy uses. Tasks run until the process exits.
pub async fn start(
    mesh: &MeshConfig,
    cfg: &AgentConfig,
    layout: &PinLayout,
    node_ip: Ipv4Addr,
    stats: Arc<ConnectionStats>,
    shutdown: Arc<Shutdown>,
    fast_path: Option<Arc<crate::capture::fast_path::FastPath>>,
) -> anyhow::Result<Arc<MeshRuntime>> {
    let bundle_pem = std::fs::read(&mesh.trust_bundle)
        .with_context(|| format!("reading the trust bundle {}", mesh.trust_bundle.display()))?;
    let bundle = TrustBundle::from_pem(&bundle_pem)
        .with_context(|| format!("trust bundle {}", mesh.trust_bundle.display()))?;
    let store = Arc::new(CertStore::new(bundle));

    // xDS: workloads, services, authorization policies.
    let mut xds_cfg = node_identity::xds_config(mesh, node_ip.into());
    xds_cfg.type_urls = vec![
        ADDRESS_TYPE_URL.to_string(),
        AUTHORIZATION_TYPE_URL.to_string(),
    ];
    if uses_tls(&mesh.xds_address) {
        xds_cfg.tls = Some(mesh_xds::XdsTls {
            root_pem: bundle_pem.clone(),
            client_cert: None,
            server_name: None,
        });
    }
    let (xds, mut snapshots) = XdsClient::spawn(xds_cfg);
    let xds_rx = snapshots.clone();
    let node = mesh.node_name.clone();
    let mut initial = xds::view(&node, &snapshots.borrow());
    initial.generation = 1;
    let initial = Arc::new(initial);
    let (view_tx, view_rx) = watch::channel(initial);
    let live = Arc::new(LiveConnections::default());
    let kernel_denies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let policy_generations = Arc::default();
    let sync = PolicySync {
        strict: StrictPods::open(layout)?,
        probes: ProbePorts::open(layout)?,
        denies: KernelDenies::open(layout)?,
        enroller: Enroller::open(layout)?,
        live: Arc::clone(&live),
        compiled: Arc::clone(&kernel_denies),
        generations: Arc::clone(&policy_generations),
        fast_path,
    };
    tokio::spawn(sync.run(view_rx.clone()));
    let xds_updated_unix_ms = Arc::new(AtomicU64::new(0));
    let updated = Arc::clone(&xds_updated_unix_ms);
    tokio::spawn(async move {
        let _keep_client = xds;
        let mut generation = 0;
        let mut view_generation = 1;
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            if snapshot.generation != generation {
                generation = snapshot.generation;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                updated.store(
                    u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
            }
            let mut view = xds::view(&node, &snapshot);
            view_generation += 1;
            view.generation = view_generation;
            tracing::debug!(
                workloads = view.workload_count(),
                services = view.service_count(),
                policies = view.policies.len(),
                connected = snapshot.connected,
                "mesh view updated"
            );
            view_tx.send_replace(Arc::new(view));
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    });

    // Certificates for this node's pods.
    let endpoint = tonic::transport::Endpoint::from_shared(mesh.ca_address.clone())
        .with_context(|| format!("CA address {:?}", mesh.ca_address))?;
    let ca_tls = if uses_tls(&mesh.ca_address) {
        let tls = mesh_xds::XdsTls {
            root_pem: bundle_pem.clone(),
            client_cert: None,
            server_name: None,
        };
        Some(mesh_xds::transport::TlsConnector::new(&tls).context("CA TLS settings")?)
    } else {
        None
    };
    let certs = certs::CertManager {
        store: Arc::clone(&store),
        ca: Arc::new(
            ca_client::CaClient::new(endpoint, ca_tls, ca_client::CaSettings::default())
                .with_request(node_identity::ca_request(mesh)),
        ),
        ttl: mesh.cert_ttl,
        issued: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        token: mesh.token_file.clone().map(mesh_xds::token::TokenFile::new),
        wrong_identity: Arc::default(),
    };
    let issued = Arc::clone(&certs.issued);
    let wrong_identity = Arc::clone(&certs.wrong_identity);
    tokio::spawn(certs.run(view_rx.clone()));

    // Inbound HBONE.
    let hbone_addr = mesh
        .hbone_addr
        .unwrap_or_else(|| std::net::SocketAddr::from((node_ip, mesh_common::HBONE_PORT)));
    let listener = tokio::net::TcpListener::bind(hbone_addr)
        .await
        .with_context(|| format!("binding the HBONE listener on {hbone_addr}"))?;
    let inputs = ProxyInputs {
        settings: ProxySettings {
            socket_mark: cfg.socket_mark,
            buffer_size: cfg.buffer_size,
            // How long the inbound side waits for a local pod to accept.
            connect_timeout: cfg.connect_timeout,
        },
        stats,
        view: view_rx.clone(),
        live: Arc::clone(&live),
        // Inbound connects to local pods only.
        hbone: None,
        resolver: None,
    };
    let handler = Arc::new(InboundHandler::new(Arc::new(inputs)));
    // On shutdown the server stops accepting, sends GOAWAY and lets open
    // tunnels finish within the agent's drain timeout.
    let server = HboneServer::new(Arc::clone(&store), handler).with_options(ServerOptions {
        drain_timeout: cfg.drain_timeout,
        ..ServerOptions::default()
    });
    tokio::spawn(async move {
        let stop = async move {
            shutdown.triggered().await;
        };
        if let Err(error) = server.serve_with_shutdown(listener, stop).await {
            tracing::error!(%error, "HBONE server stopped");
        }
    });
    tracing::info!(%hbone_addr, xds = %mesh.xds_address, node = %mesh.node_name, "mesh side started");

    let hbone = HboneClient::new(
        Arc::clone(&store),
        ClientOptions {
            socket_mark: Some(cfg.socket_mark),
            ..ClientOptions::default()
        },
    );
    Ok(Arc::new(MeshRuntime {
        view: view_rx,
        hbone,
        store,
        issued,
        wrong_identity,
        xds: xds_rx,
        live,
        kernel_denies,
        policy_generations,
        xds_address: mesh.xds_address.clone(),
        xds_updated_unix_ms,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_follows_the_uri_scheme() {
        assert!(super::uses_tls("https://istiod.istio-system:15012"));
        assert!(!super::uses_tls("http://10.0.0.1:15010"));
        assert!(!super::uses_tls("10.0.0.1:15010"));
        assert!(!super::uses_tls("not a uri"));
    }
}
