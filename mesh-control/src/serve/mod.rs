//! The control plane's serving side: Delta ADS (workloads, services,
//! authorization policies for agents; Envoy resources for waypoints) and
//! the Istio CA service, on one port — plaintext (15010) or TLS (15012).
//! What is served comes from [`crate::translate`].
//!
//! - [`resources`]: the translated resources, encoded and versioned,
//!   rebuilt once per change.
//! - [`ads`]: the per-stream Delta ADS protocol.
//! - [`proxies`]: [`ConnectedProxies`], who is connected and in what state.
//! - `stream_identity`: which waypoint a stream is (Listener and
//!   RouteConfiguration are scoped per waypoint), or whether it is Istio's
//!   ztunnel.
//! - `ztunnel_compat`: what a ztunnel stream is not sent (AUDIT policies).
//! - [`ca_service`]: `IstioCertificateService` over a [`CsrSigner`].
pub mod ads;
pub mod ca_service;
mod canonical;
pub mod proxies;
pub mod resources;
mod stream_identity;
mod ztunnel_compat;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::StreamExt as _;
use mesh_xds::proto::{
    envoy_discovery::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer,
    istio_ca::istio_certificate_service_server::IstioCertificateServiceServer,
};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;

pub use ads::AdsService;
pub use ca_service::{CaService, CsrSigner, DEFAULT_CERT_TTL};
pub use proxies::{ConnectedProxies, Nack, ProxyStatus, SyncStatus, TypeStatus};

use crate::{authn::AuthPolicy, model::MeshState, translate::workload::ConvertOptions};

/// Largest gRPC message we send (pushes are split at
/// [`ads::MAX_RESPONSE_BYTES`], so this only bounds the envelope).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Largest gRPC message we accept: a reconnecting client's
/// `initial_resource_versions` for a large mesh fits, a flood does not.
const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// Settings of [`serve_listener`] beyond the arguments of [`serve`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub convert: ConvertOptions,
    /// Certificate validity when a client asks for none.
    pub default_cert_ttl: Duration,
    /// Token authentication of xDS streams and certificate requests
    /// (`--authenticate kubernetes`); `None` serves anyone.
    pub auth: Option<AuthPolicy>,
    /// Resources built once ([`resources::spawn_builder`]) for several
    /// listeners, so the plaintext and the TLS port do not each translate
    /// every change; `None`: the listener builds its own.
    pub resources: Option<watch::Receiver<Arc<resources::Resources>>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            convert: ConvertOptions::default(),
            default_cert_ttl: DEFAULT_CERT_TTL,
            auth: None,
            resources: None,
        }
    }
}

/// A listener's own channel fed from shared resources: aborting the relay
/// (or the shared builder going away) closes it, which ends this
/// listener's streams, as aborting its own builder would.
fn relay(
    mut shared: watch::Receiver<Arc<resources::Resources>>,
) -> (
    watch::Receiver<Arc<resources::Resources>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(shared.borrow_and_update().clone());
    let task = tokio::spawn(async move {
        while shared.changed().await.is_ok() {
            let next = shared.borrow_and_update().clone();
            tx.send_replace(next);
        }
    });
    (rx, task)
}

/// Binds `addr` and serves Delta ADS and the CA service until an error,
/// with default [`ServerOptions`]. `tls: Some` serves over TLS (15012),
/// `None` plaintext (15010).
pub async fn serve(
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: watch::Receiver<Arc<MeshState>>,
    signer: Arc<dyn CsrSigner>,
    proxies: Arc<ConnectedProxies>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    serve_listener(
        listener,
        tls,
        state,
        signer,
        proxies,
        ServerOptions::default(),
        std::future::pending(),
    )
    .await
}

/// Serves on an already bound listener (tests bind port 0 and read the
/// address first) until `shutdown` completes; then every ADS stream is ended
/// with UNAVAILABLE (clients reconnect elsewhere) and the server returns
/// once the connections have closed.
pub async fn serve_listener(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: watch::Receiver<Arc<MeshState>>,
    signer: Arc<dyn CsrSigner>,
    proxies: Arc<ConnectedProxies>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let local = listener.local_addr().context("listener address")?;
    let cluster_id = opts.convert.cluster_id.clone();
    let (resources, builder) = match opts.resources.clone() {
        Some(shared) => relay(shared),
        None => resources::spawn_builder(state.clone(), opts.convert.clone(), proxies.clone()),
    };
    let ads = AggregatedDiscoveryServiceServer::new(
        AdsService::new(resources, proxies)
            .with_auth(opts.auth.clone())
            .with_cluster_id(cluster_id.clone()),
    )
    .max_decoding_message_size(MAX_REQUEST_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut ca = CaService::new(signer, opts.default_cert_ttl).with_cluster_id(cluster_id);
    if let Some(policy) = opts.auth.clone() {
        ca = ca.with_auth(policy, state);
    }
    let ca = IstioCertificateServiceServer::new(ca);
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(ads)
        .add_service(ca);
    // Closing the resources channel ends the ADS streams, which lets the
    // graceful shutdown finish.
    let abort = builder.abort_handle();
    let shutdown = async move {
        shutdown.await;
        abort.abort();
    };
    tracing::info!(addr = %local, tls = tls.is_some(), authenticate = opts.auth.is_some(), "serving xDS and CA");
    let served = match tls {
        Some(acceptor) => {
            let incoming = mesh_xds::transport::tls_incoming(listener, acceptor);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            let incoming = TcpListenerStream::new(listener).map(|conn| {
                if let Ok(tcp) = &conn {
                    let _ = tcp.set_nodelay(true);
                }
                conn
            });
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    builder.abort();
    served.with_context(|| format!("serving gRPC on {local}"))
}
