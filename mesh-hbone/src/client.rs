//! The HBONE client: `CONNECT <authority>` over a pooled mTLS HTTP/2
//! connection to a gateway: the destination pod's own listener
//! (`<pod IP>:15008`), a waypoint, or another network's gateway. The TCP
//! socket may come from a [`SocketOrigin`] (the agent makes it inside the
//! source pod's network namespace, so the peer sees the pod's address).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode, Uri, Version};
use tokio::io::BufReader;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use crate::alert::AlertWatch;
use crate::certs::WorkloadCert;
use crate::identity::Identity;
use crate::pool::{spawn_driver, Conn, ConnShared, Pool, PoolKey, StreamGuard};
use crate::settings;
use crate::stream::HboneStream;
use crate::tls::{self, classify_io, PeerIdentityError, TlsError, TlsFailure};
use crate::CertStore;

/// Client tuning; `Default` suits the node agent.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Streams one connection carries before another connection to the same
    /// (source, gateway, expected) is opened. The server's
    /// SETTINGS_MAX_CONCURRENT_STREAMS also applies.
    pub max_streams_per_connection: usize,
    /// Bound on TCP connect + TLS handshake + HTTP/2 preface.
    pub connect_timeout: Duration,
    /// Bound on waiting for the CONNECT response headers.
    pub response_timeout: Duration,
    /// Close a connection after this long without streams; `None` keeps it.
    pub idle_timeout: Option<Duration>,
    /// `SO_MARK` on the socket to the gateway (needs CAP_NET_ADMIN), so the
    /// agent's own traffic bypasses capture.
    pub socket_mark: Option<u32>,
    /// Name the expected identity in TLS SNI ([`crate::sni_for`]). Off by
    /// default: a pod's own listener, ztunnel's included, knows whom it
    /// serves; only a server holding several identities on one address
    /// (our node agent's node listener) needs it.
    pub send_sni: bool,
}

/// What [`SocketOrigin::socket`] returns.
pub type SocketOriginFuture = Pin<Box<dyn Future<Output = io::Result<std::net::TcpStream>> + Send>>;

/// Makes the TCP sockets of tunnels opened on behalf of one source (for
/// the agent: inside the source pod's network namespace). Connections are
/// pooled per origin: a tunnel never rides a connection another origin
/// opened.
pub trait SocketOrigin: Send + Sync {
    /// Tells origins apart in the pool (the agent uses the netns cookie).
    fn key(&self) -> u64;
    /// A new TCP socket of `gateway`'s address family, not yet connected,
    /// non-blocking, close-on-exec.
    fn socket(&self, gateway: SocketAddr) -> SocketOriginFuture;
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_streams_per_connection: 100,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(60)),
            socket_mark: None,
            send_sni: false,
        }
    }
}

/// Why an HBONE CONNECT failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no certificate for source identity {src} in the cert store")]
    NoCertificate { src: Identity },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("preparing the socket to HBONE gateway {gateway} (mark {mark:?}) failed: {source}")]
    Socket {
        gateway: SocketAddr,
        mark: Option<u32>,
        #[source]
        source: io::Error,
    },
    #[error("TCP connect to HBONE gateway {gateway} failed: {source}")]
    Connect {
        gateway: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("HBONE gateway {gateway}: {stage} did not finish within {timeout:?}")]
    Timeout {
        gateway: SocketAddr,
        stage: &'static str,
        timeout: Duration,
    },
    #[error("HBONE gateway {gateway} presented {presented}, expected {expected}")]
    ServerIdentityMismatch {
        gateway: SocketAddr,
        expected: Identity,
        presented: Identity,
    },
    #[error("TLS handshake as {src} with HBONE gateway {gateway} (expecting {expected}) failed: {source}")]
    Handshake {
        gateway: SocketAddr,
        src: Identity,
        expected: Identity,
        #[source]
        source: io::Error,
    },
    #[error("HBONE gateway {gateway} rejected the connection from {src} (TLS alert {alert})")]
    RejectedByPeer {
        gateway: SocketAddr,
        src: Identity,
        alert: String,
    },
    #[error("HBONE gateway {gateway} did not negotiate ALPN h2")]
    NoH2 { gateway: SocketAddr },
    #[error("HTTP/2 with HBONE gateway {gateway} failed: {source}")]
    H2 {
        gateway: SocketAddr,
        #[source]
        source: h2::Error,
    },
    #[error("{authority} cannot be sent as a CONNECT authority")]
    InvalidAuthority { authority: SocketAddr },
    #[error("CONNECT {authority} via HBONE gateway {gateway} answered {status}")]
    Status {
        gateway: SocketAddr,
        authority: SocketAddr,
        status: StatusCode,
    },
}

impl ClientError {
    /// The HTTP status the gateway answered, for [`ClientError::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Transient transport failures a caller may retry; identity,
    /// certificate and policy failures are not.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::Timeout { .. } | ClientError::H2 { .. }
        )
    }
}

struct Inner {
    store: Arc<CertStore>,
    options: ClientOptions,
    pool: Arc<Pool>,
}

/// HBONE client with a connection pool; cheap to clone (shared pool).
#[derive(Clone)]
pub struct HboneClient {
    inner: Arc<Inner>,
}

impl HboneClient {
    pub fn new(store: Arc<CertStore>, options: ClientOptions) -> Self {
        HboneClient {
            inner: Arc::new(Inner {
                store,
                options,
                pool: Arc::new(Pool::default()),
            }),
        }
    }

    /// Open pooled connections (all keys).
    pub fn pooled_connections(&self) -> usize {
        self.inner.pool.connections()
    }

    /// Opens a tunnel as `src` through `gateway`, whose certificate must name
    /// `expected`, to `authority` (the destination pod `ip:port`).
    pub async fn connect(
        &self,
        src: &Identity,
        gateway: SocketAddr,
        expected: &Identity,
        authority: SocketAddr,
    ) -> Result<HboneStream, ClientError> {
        self.connect_via(src, gateway, expected, authority, None, None)
            .await
    }

    /// [`Self::connect`], telling the server the source pod's address in a
    /// `forwarded: for=<ip>` header (RFC 7239, as ztunnel sends it), so the
    /// destination can name the source workload and match `ipBlocks`.
    pub async fn connect_from(
        &self,
        src: &Identity,
        gateway: SocketAddr,
        expected: &Identity,
        authority: SocketAddr,
        source_ip: Option<IpAddr>,
    ) -> Result<HboneStream, ClientError> {
        self.connect_via(src, gateway, expected, authority, source_ip, None)
            .await
    }

    /// [`Self::connect_from`] over a connection whose TCP socket `origin`
    /// makes (`None`: a socket of this process's namespace).
    pub async fn connect_via(
        &self,
        src: &Identity,
        gateway: SocketAddr,
        expected: &Identity,
        authority: SocketAddr,
        source_ip: Option<IpAddr>,
        origin: Option<Arc<dyn SocketOrigin>>,
    ) -> Result<HboneStream, ClientError> {
        // Authority-form URI: `ip:port` (`[v6]:port`), as ztunnel sends it.
        let uri: Uri = authority
            .to_string()
            .parse()
            .map_err(|_| ClientError::InvalidAuthority { authority })?;
        let key = PoolKey {
            src: src.clone(),
            gateway,
            expected: expected.clone(),
            origin: origin.as_ref().map(|o| o.key()),
        };
        let origin = origin.as_deref();
        let (conn, guard, fresh) = self.checkout_or_dial(&key, origin).await?;
        match self
            .send_connect(&conn, guard, gateway, authority, &uri, source_ip)
            .await
        {
            // A pooled connection may have died since its last use (GOAWAY,
            // reset peer): one retry on a new connection.
            Err(e) if !fresh && connection_gone(&e) => {
                tracing::debug!(%gateway, error = %e, "pooled HBONE connection unusable, redialling");
                conn.shared.mark_closed();
                self.inner.pool.remove(&key, conn.id);
                let (conn, guard, _) = self.checkout_or_dial(&key, origin).await?;
                self.send_connect(&conn, guard, gateway, authority, &uri, source_ip)
                    .await
            }
            other => other,
        }
    }

    fn current_cert(&self, src: &Identity) -> Result<Arc<WorkloadCert>, ClientError> {
        self.inner
            .store
            .get(src)
            .ok_or_else(|| ClientError::NoCertificate { src: src.clone() })
    }

    async fn checkout_or_dial(
        &self,
        key: &PoolKey,
        origin: Option<&dyn SocketOrigin>,
    ) -> Result<(Arc<Conn>, StreamGuard, bool), ClientError> {
        let max = self.inner.options.max_streams_per_connection.max(1);
        let pool = &self.inner.pool;
        let cert = self.current_cert(&key.src)?;
        if let Some((conn, guard)) = pool.checkout(key, max, &cert) {
            return Ok((conn, guard, false));
        }
        let lock = pool.dial_lock(key);
        let _dialing = lock.lock().await;
        let cert = self.current_cert(&key.src)?;
        if let Some((conn, guard)) = pool.checkout(key, max, &cert) {
            return Ok((conn, guard, false));
        }
        let timeout = self.inner.options.connect_timeout;
        let conn = tokio::time::timeout(timeout, self.dial(key, cert, origin))
            .await
            .map_err(|_| ClientError::Timeout {
                gateway: key.gateway,
                stage: "connection setup",
                timeout,
            })??;
        let (conn, guard) = pool.insert(key, conn);
        Ok((conn, guard, true))
    }

    async fn dial(
        &self,
        key: &PoolKey,
        src_cert: Arc<WorkloadCert>,
        origin: Option<&dyn SocketOrigin>,
    ) -> Result<Conn, ClientError> {
        let gateway = key.gateway;
        let (config, server_name) = tls::client_config(
            self.inner.store.clone(),
            &key.src,
            &key.expected,
            self.inner.options.send_sni,
        )?;
        let tcp = self.connect_tcp(gateway, origin).await?;
        let tcp = BufReader::with_capacity(settings::SOCKET_READ_BUFFER, tcp);
        let mut tls = TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| self.handshake_error(key, e))?;
        tls.get_mut()
            .1
            .set_buffer_limit(Some(settings::TLS_SEND_BUFFER));
        let session = tls.get_ref().1;
        if session.alpn_protocol() != Some(tls::ALPN_H2) {
            return Err(ClientError::NoH2 { gateway });
        }
        // The verifier already required a leaf, so this is always present.
        let peer_certificate = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned())
            .ok_or_else(|| ClientError::Handshake {
                gateway,
                src: key.src.clone(),
                expected: key.expected.clone(),
                source: io::Error::other("the server sent no certificate"),
            })?;
        let shared = ConnShared::new();
        let (send, connection) = settings::client_builder()
            .handshake(AlertWatch::new(tls, shared.alert.clone()))
            .await
            .map_err(|source| ClientError::H2 { gateway, source })?;
        let pool = &self.inner.pool;
        let id = pool.next_id();
        spawn_driver(
            Arc::downgrade(pool),
            key.clone(),
            id,
            shared.clone(),
            connection,
            self.inner.options.idle_timeout,
        );
        tracing::debug!(id, %gateway, src = %key.src, expected = %key.expected, "HBONE connection established");
        Ok(Conn {
            id,
            send,
            peer_certificate,
            src_cert,
            shared,
        })
    }

    async fn connect_tcp(
        &self,
        gateway: SocketAddr,
        origin: Option<&dyn SocketOrigin>,
    ) -> Result<TcpStream, ClientError> {
        let mark = self.inner.options.socket_mark;
        let socket_error = |source| ClientError::Socket {
            gateway,
            mark,
            source,
        };
        let socket = match origin {
            Some(origin) => origin
                .socket(gateway)
                .await
                .map(TcpSocket::from_std_stream)
                .map_err(socket_error)?,
            None => match gateway {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            }
            .map_err(socket_error)?,
        };
        if let Some(mark) = mark {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::Mark, &mark)
                .map_err(|errno| socket_error(errno.into()))?;
        }
        let tcp = socket
            .connect(gateway)
            .await
            .map_err(|source| ClientError::Connect { gateway, source })?;
        tcp.set_nodelay(true).map_err(socket_error)?;
        Ok(tcp)
    }

    fn handshake_error(&self, key: &PoolKey, source: io::Error) -> ClientError {
        match classify_io(&source) {
            Some(TlsFailure::Identity(PeerIdentityError::Mismatch {
                expected,
                presented,
            })) => ClientError::ServerIdentityMismatch {
                gateway: key.gateway,
                expected: expected.clone(),
                presented: presented.clone(),
            },
            Some(TlsFailure::Alert(alert)) => ClientError::RejectedByPeer {
                gateway: key.gateway,
                src: key.src.clone(),
                alert,
            },
            _ => ClientError::Handshake {
                gateway: key.gateway,
                src: key.src.clone(),
                expected: key.expected.clone(),
                source,
            },
        }
    }

    async fn send_connect(
        &self,
        conn: &Conn,
        guard: StreamGuard,
        gateway: SocketAddr,
        authority: SocketAddr,
        uri: &Uri,
        source_ip: Option<IpAddr>,
    ) -> Result<HboneStream, ClientError> {
        // TLS 1.3: the server judges our certificate after our side of the
        // handshake finished, so its verdict (an alert) surfaces here.
        let h2_error = |source: h2::Error| match conn.shared.alert.get() {
            Some(alert) => ClientError::RejectedByPeer {
                gateway,
                src: conn.src_cert.identity().clone(),
                alert,
            },
            None => ClientError::H2 { gateway, source },
        };
        let mut send = conn.send.clone().ready().await.map_err(h2_error)?;
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri(uri.clone());
        if let Some(ip) = source_ip {
            request = request.header("forwarded", crate::forwarded::header_value(ip));
        }
        let request = request
            .body(())
            .map_err(|_| ClientError::InvalidAuthority { authority })?;
        let (response, send_stream) = send.send_request(request, false).map_err(h2_error)?;
        drop(send);
        let timeout = self.inner.options.response_timeout;
        let response = tokio::time::timeout(timeout, response)
            .await
            .map_err(|_| ClientError::Timeout {
                gateway,
                stage: "CONNECT response",
                timeout,
            })?
            .map_err(h2_error)?;
        if response.status() != StatusCode::OK {
            return Err(ClientError::Status {
                gateway,
                authority,
                status: response.status(),
            });
        }
        Ok(HboneStream::new(
            send_stream,
            response.into_body(),
            Some(conn.peer_certificate.clone()),
            Some(Box::new(guard)),
        ))
    }
}

/// The connection, not this request, failed: worth one retry elsewhere.
fn connection_gone(e: &ClientError) -> bool {
    match e {
        ClientError::H2 { source, .. } => {
            source.is_go_away()
                || source.is_io()
                || source.reason() == Some(h2::Reason::REFUSED_STREAM)
        }
        _ => false,
    }
}
