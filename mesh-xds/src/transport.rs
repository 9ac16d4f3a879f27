//! TLS for tonic without tonic's `tls` feature: a client connector
//! (TCP + tokio-rustls, ALPN h2) for `Endpoint::connect_with_connector`, and
//! a server-side incoming stream of TLS connections for
//! `Server::serve_with_incoming`. rustls always uses the ring provider,
//! passed explicitly.
use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{client, server, TlsAcceptor};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A TLS setting that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("no certificate in {0} PEM")]
    NoCertificate(&'static str),
    #[error("no private key in the client key PEM")]
    NoKey,
    #[error("reading {what} PEM")]
    Pem {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("building the rustls config")]
    Rustls(#[from] rustls::Error),
}

/// The ring provider, explicitly (never rely on a process-wide default).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate of a PEM bundle.
pub fn parse_certs(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = rustls_pemfile::certs(&mut &*pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(what));
    }
    Ok(certs)
}

/// Parses the first private key of a PEM document.
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    rustls_pemfile::private_key(&mut &*pem)
        .map_err(|source| TlsConfigError::Pem {
            what: "client key",
            source,
        })?
        .ok_or(TlsConfigError::NoKey)
}

/// Client connector: TCP connect (`TCP_NODELAY`), then a TLS handshake
/// verifying the server against `root_pem`, presenting the client
/// certificate if configured.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsConnector {
    /// Builds the rustls client config from [`XdsTls`](crate::XdsTls).
    pub fn new(tls: &crate::XdsTls) -> Result<Self, TlsConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(&tls.root_pem, "root")? {
            roots.add(cert)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match &tls.client_cert {
            Some((chain, key)) => {
                builder.with_client_auth_cert(parse_certs(chain, "client")?, parse_key(key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = match &tls.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|e| rustls::Error::General(format!("server name {name:?}: {e}")))?,
            ),
            None => None,
        };
        Ok(TlsConnector {
            config: Arc::new(config),
            server_name,
        })
    }

    async fn connect(self, uri: http::Uri) -> io::Result<TokioIo<client::TlsStream<TcpStream>>> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        let host = uri
            .host()
            .ok_or_else(|| invalid(format!("no host in {uri}")))?;
        // `Uri::host` keeps the brackets of an IPv6 literal.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let server_name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("host {host:?} as a TLS name: {e}")))?,
        };
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(self.config)
            .connect(server_name, tcp)
            .await?;
        Ok(TokioIo::new(tls))
    }
}

impl tonic::codegen::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// A server-side TLS connection, as tonic's `serve_with_incoming` wants it.
pub struct TlsServerIo(server::TlsStream<TcpStream>);

impl TlsServerIo {
    /// The client's certificate chain, leaf first (if it sent one).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.0.get_ref().1.peer_certificates()
    }
}

/// Connection info of a [`TlsServerIo`], available to handlers through
/// `Request::extensions()` (and `Request::remote_addr()`).
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    pub tcp: TcpConnectInfo,
    /// DER of the client's certificates, leaf first.
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Connected for TlsServerIo {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> TlsConnectInfo {
        let tcp = self.0.get_ref().0;
        TlsConnectInfo {
            tcp: TcpConnectInfo {
                local_addr: tcp.local_addr().ok(),
                remote_addr: tcp.peer_addr().ok(),
            },
            peer_certificates: self.peer_certificates().map(|c| Arc::new(c.to_vec())),
        }
    }
}

impl AsyncRead for TlsServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections on `listener` and yields those that complete a
/// TLS handshake. Each handshake runs in its own task, so a slow or hostile
/// client delays no one else; failed handshakes are logged and dropped. The
/// stream ends (and the accept task stops) when the stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> impl Stream<Item = io::Result<TlsServerIo>> {
    let (tx, rx) = mpsc::channel::<io::Result<TlsServerIo>>(16);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and the like: back off briefly, keep serving.
                        tracing::warn!(error = %e, "accepting a TCP connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(TlsServerIo(tls))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Remote address of a plaintext or TLS connection, from a request.
pub fn remote_addr<T>(req: &tonic::Request<T>) -> Option<SocketAddr> {
    req.remote_addr()
        .or_else(|| req.extensions().get::<TlsConnectInfo>()?.tcp.remote_addr)
}
