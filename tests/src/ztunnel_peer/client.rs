//! The peer's HBONE client, as ztunnel's outbound side behaves: TCP to
//! `<destination pod IP>:15008` (or its waypoint's) from the source pod's network namespace
//! (so the server sees the pod's address), TLS 1.3 with ALPN `h2`, the
//! source workload's certificate and no SNI; then an HTTP/2 CONNECT whose
//! `:authority` is `<pod IP>:<target port>`, carrying `baggage`,
//! `forwarded: for="<source ip:port>"` and a W3C `traceparent`.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::{ca::Identity, tls, HBONE_PORT};

/// How long any step may take.
const STEP: Duration = Duration::from_secs(5);

/// One CONNECT to make.
pub struct Connect<'a> {
    /// The CONNECT's `:authority`: the destination pod and the port its
    /// application listens on, or a Service's VIP and port.
    pub target: SocketAddr,
    /// Where to dial instead of the target's address: a waypoint's pod
    /// (ztunnel sends a Service with a waypoint there, `:authority` the
    /// VIP).
    pub via: Option<std::net::IpAddr>,
    /// The source workload's certificate.
    pub identity: &'a Identity,
    /// The identity the destination must present.
    pub expect_server: &'a str,
    /// `baggage` (ztunnel: `k8s.cluster.name=…,k8s.namespace.name=…,
    /// k8s.deployment.name=…,service.name=…,service.version=…`).
    pub baggage: String,
    /// `traceparent` (`00-<32 hex>-<16 hex>-01`).
    pub traceparent: String,
}

/// An open tunnel: the CONNECT's status and its streams.
pub struct Tunnel {
    pub status: http::StatusCode,
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    /// The TCP connection's local address (the source the server sees).
    pub local: SocketAddr,
}

impl Tunnel {
    /// Sends `data`, then reads until as many bytes came back (an echo
    /// server behind the tunnel).
    pub async fn echo(&mut self, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.send.reserve_capacity(data.len());
        self.send.send_data(Bytes::copy_from_slice(data), false)?;
        let mut got = Vec::new();
        while got.len() < data.len() {
            let chunk = tokio::time::timeout(STEP, self.recv.data())
                .await
                .context("waiting for the echo")?
                .context("the tunnel ended before the echo")??;
            let _ = self.recv.flow_control().release_capacity(chunk.len());
            got.extend_from_slice(&chunk);
        }
        Ok(got)
    }
}

impl Tunnel {
    /// Sends `data`, then reads everything the other side sends until it
    /// ends the stream (e.g. an HTTP/1.1 answer to `Connection: close`).
    pub async fn exchange(&mut self, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.send.reserve_capacity(data.len());
        self.send.send_data(Bytes::copy_from_slice(data), false)?;
        let mut got = Vec::new();
        loop {
            let chunk = tokio::time::timeout(STEP, self.recv.data())
                .await
                .with_context(|| {
                    format!(
                        "waiting for the answer's end; so far: {:?}",
                        String::from_utf8_lossy(&got)
                    )
                })?;
            match chunk {
                Some(chunk) => {
                    let chunk = chunk?;
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                    got.extend_from_slice(&chunk);
                }
                None => return Ok(got),
            }
        }
    }
}

/// Opens a tunnel from the calling thread's network namespace (run it
/// under [`super::in_netns`] of the source pod).
pub async fn connect(c: &Connect<'_>) -> anyhow::Result<Tunnel> {
    let hbone = SocketAddr::new(c.via.unwrap_or(c.target.ip()), HBONE_PORT);
    let tcp = tokio::time::timeout(STEP, TcpStream::connect(hbone))
        .await
        .with_context(|| format!("TCP to {hbone} timed out"))?
        .with_context(|| format!("TCP to {hbone}"))?;
    let local = tcp.local_addr()?;
    let config = tls::client_config(c.identity, c.expect_server)?;
    // An address as the server name: rustls sends no SNI for it, as
    // ztunnel sends none.
    let name = ServerName::IpAddress(hbone.ip().into());
    let tls = tokio::time::timeout(
        STEP,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .context("TLS handshake timed out")?
    .with_context(|| format!("TLS handshake with {hbone}"))?;
    let (mut h2, connection) = tokio::time::timeout(STEP, h2::client::handshake(tls))
        .await
        .context("HTTP/2 handshake timed out")??;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(c.target.to_string())
        .header("baggage", &c.baggage)
        .header("forwarded", format!("for=\"{local}\""))
        .header("traceparent", &c.traceparent)
        .body(())?;
    h2 = h2.ready().await?;
    let (response, send) = h2.send_request(request, false)?;
    let response = tokio::time::timeout(STEP, response)
        .await
        .context("waiting for the CONNECT's answer")??;
    let status = response.status();
    Ok(Tunnel {
        status,
        send,
        recv: response.into_body(),
        local,
    })
}
