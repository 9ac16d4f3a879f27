//! The HBONE server: accepts mTLS HTTP/2 connections (certificate chosen by
//! [`crate::tls::local_identity`]: the identity the server is bound to, as a
//! pod's own listener is, else by SNI), asks a [`ConnectHandler`] what each `CONNECT <ip:port>` stream
//! should reach, and relays bytes between the stream and that upstream.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Response, StatusCode};
use mesh_admin::{
    listen::{Limits, Listener},
    rate_limit::LogLimiter,
};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::counted::LiveBytes;
use crate::identity::Identity;
use crate::tls::{self, TlsError};
use crate::CertStore;

mod conn;
mod linger;

/// One CONNECT the handler is asked to serve.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// Unique among the CONNECTs of this process: lets a handler pair its
    /// `handle` call with the `finished` call of the same stream.
    pub id: u64,
    /// The client's verified SPIFFE identity.
    pub peer: Identity,
    /// The client's leaf certificate.
    pub peer_certificate: CertificateDer<'static>,
    /// The local identity whose certificate the server showed (the one it is
    /// bound to, or the one the client named by SNI).
    pub local_identity: Identity,
    /// `:authority`, the destination `ip:port`.
    pub authority: SocketAddr,
    /// TCP peer of the HBONE connection: the source pod when its agent
    /// dials from the pod's network namespace (as ztunnel does), else the
    /// source node or waypoint.
    pub peer_addr: SocketAddr,
    /// Other request headers (e.g. `forwarded`, `traceparent`).
    pub headers: HeaderMap,
    /// The bytes the server relays for this stream, counted as they move
    /// (`request`: client → upstream); a handler may read them while the
    /// tunnel is open (live metrics).
    pub live: Arc<LiveBytes>,
}

impl ConnectRequest {
    /// The source pod's address the client named in `forwarded: for=`;
    /// only as trustworthy as the peer's identity (a node agent vouches for
    /// its own pods).
    pub fn forwarded_for(&self) -> Option<std::net::IpAddr> {
        let value = self.headers.get("forwarded")?.to_str().ok()?;
        crate::forwarded::parse_for(value)
    }
}

/// An upstream byte stream the server relays a tunnel to.
pub trait Upstream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Upstream for T {}

/// What [`ConnectHandler::handle`] returns.
pub type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Box<dyn Upstream>, StatusCode>> + Send + 'static>>;

/// How a relayed tunnel ended.
#[derive(Debug)]
pub struct RelayOutcome {
    /// Bytes from the HBONE client to the upstream.
    pub bytes_in: u64,
    /// Bytes from the upstream to the HBONE client.
    pub bytes_out: u64,
    pub error: Option<std::io::Error>,
}

/// Decides where a CONNECT goes (authorization, upstream connect).
pub trait ConnectHandler: Send + Sync + 'static {
    /// `Ok(stream)`: answer 200 and relay; `Err(status)`: answer `status`.
    fn handle(&self, request: ConnectRequest) -> HandlerFuture;

    /// Called once a relayed tunnel has ended (metrics, access logs).
    fn finished(&self, _request: &ConnectRequest, _outcome: &RelayOutcome) {}
}

/// Wraps an async closure as a [`ConnectHandler`].
pub fn handler_fn<F, Fut, S>(f: F) -> Arc<dyn ConnectHandler>
where
    F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<S, StatusCode>> + Send + 'static,
    S: Upstream,
{
    struct FnHandler<F>(F);
    impl<F, Fut, S> ConnectHandler for FnHandler<F>
    where
        F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, StatusCode>> + Send + 'static,
        S: Upstream,
    {
        fn handle(&self, request: ConnectRequest) -> HandlerFuture {
            let fut = (self.0)(request);
            Box::pin(async move { fut.await.map(|s| Box::new(s) as Box<dyn Upstream>) })
        }
    }
    Arc::new(FnHandler(f))
}

/// Server tuning; `Default` suits the node agent.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients.
    pub max_concurrent_streams: u32,
    /// Open connections at once; at the cap the server stops accepting
    /// (new ones wait in the kernel backlog, holding no descriptor of ours).
    pub max_connections: usize,
    /// Bound on the TLS handshake and HTTP/2 preface of a new connection.
    pub handshake_timeout: Duration,
    /// After shutdown is requested, how long streams may still run.
    pub drain_timeout: Duration,
    /// Largest single read from the upstream when relaying (reads start
    /// at 16 KiB and grow to this while they fill up; see [`crate::relay()`]).
    pub relay_buffer_size: usize,
    /// Open connections from one source IP; more are closed before TLS.
    pub max_connections_per_source: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_concurrent_streams: crate::settings::MAX_CONCURRENT_STREAMS,
            max_connections: 16_384,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            relay_buffer_size: crate::relay::MAX_READ,
            // A source is a node (agent or waypoint) pooling connections
            // per identity pair; far more than it needs, far less than
            // the node's descriptors.
            max_connections_per_source: 512,
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) streams_accepted: AtomicU64,
    pub(crate) streams_rejected: AtomicU64,
}

impl ServerStats {
    pub fn connections_accepted(&self) -> u64 {
        self.connections_accepted.load(Ordering::Relaxed)
    }
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }
    pub fn streams_accepted(&self) -> u64 {
        self.streams_accepted.load(Ordering::Relaxed)
    }
    pub fn streams_rejected(&self) -> u64 {
        self.streams_rejected.load(Ordering::Relaxed)
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// An HBONE server bound to a cert store and a handler.
pub struct HboneServer {
    store: Arc<CertStore>,
    handler: Arc<dyn ConnectHandler>,
    options: ServerOptions,
    stats: Arc<ServerStats>,
    pinned: Option<Identity>,
}

impl HboneServer {
    pub fn new(store: Arc<CertStore>, handler: Arc<dyn ConnectHandler>) -> Self {
        HboneServer {
            store,
            handler,
            options: ServerOptions::default(),
            stats: Arc::default(),
            pinned: None,
        }
    }

    /// Binds the server to one workload's identity (a pod's own listener):
    /// it presents that certificate to clients sending no SNI and refuses
    /// an SNI naming anyone else.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.pinned = Some(identity);
        self
    }

    pub fn with_options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Serves until the task is dropped.
    pub async fn serve(self, listener: TcpListener) -> Result<(), ServerError> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves until `shutdown` completes, then stops accepting, sends GOAWAY
    /// on every connection and lets streams finish for up to
    /// `drain_timeout`. Returns once every connection is gone.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let acceptor =
            TlsAcceptor::from(tls::server_config(self.store.clone(), self.pinned.clone())?);
        let ctx = Arc::new(conn::Ctx {
            store: self.store,
            pinned: self.pinned,
            handler: self.handler,
            options: self.options,
            stats: self.stats,
            handshake_log: LogLimiter::new(Duration::from_secs(10)),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let mut listener = Listener::new(
            listener,
            Limits {
                max_connections: ctx.options.max_connections,
                max_per_source: Some(ctx.options.max_connections_per_source),
            },
            "HBONE",
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    ctx.stats.connections_accepted.fetch_add(1, Ordering::Relaxed);
                    let _ = accepted.stream.set_nodelay(true);
                    let fut = conn::serve_connection(
                        ctx.clone(), acceptor.clone(), accepted.stream, accepted.peer, stop_rx.clone());
                    let permit = accepted.permit;
                    tasks.spawn(async move {
                        fut.await;
                        drop(permit);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Runs an HBONE server with default options on `listener` until dropped.
pub async fn serve(
    listener: TcpListener,
    store: Arc<CertStore>,
    handler: Arc<dyn ConnectHandler>,
) -> Result<(), ServerError> {
    HboneServer::new(store, handler).serve(listener).await
}

fn empty_response(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

/// What the server checks of a stream's request head before the handler
/// sees it: the method is CONNECT (else 405) and `:authority` is an
/// `ip:port` (else 400). `Err` is the status the stream is refused with.
pub fn connect_target(method: &Method, uri: &http::Uri) -> Result<SocketAddr, StatusCode> {
    if method != Method::CONNECT {
        return Err(StatusCode::METHOD_NOT_ALLOWED);
    }
    uri.authority()
        .and_then(|a| a.as_str().parse::<SocketAddr>().ok())
        .ok_or(StatusCode::BAD_REQUEST)
}
