//! The agent's DNS server for the node's pods, on the redirect addresses,
//! port 15053 (`mesh_common::DNS_PROXY_PORT`, ztunnel's DNS proxy port),
//! UDP and TCP: pods' UDP queries to port 53 are redirected here by the
//! capture programs. Each query is decided by answer.rs (answered from
//! the view, refused, or forwarded through upstream.rs) and counted in
//! `mesh_agent_dns_requests_total`.
//!
//! Bounds: [`MAX_IN_FLIGHT`] UDP queries at once (more are dropped, as a
//! busy resolver does), queries of at most [`MAX_QUERY`] bytes, TCP
//! connections capped in total and per source, each idle for at most
//! [`TCP_IDLE`] and carrying at most [`TCP_QUERIES`] queries.
use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use mesh_admin::listen::{Limits, Listener};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{watch, Semaphore},
};

use super::{
    answer::{self, Decision, Indexed},
    upstream::Upstream,
};
use crate::{
    metrics::dns::{DnsMetrics, Outcome},
    state::view::MeshView,
};

/// The largest query taken (EDNS's usual payload size).
pub const MAX_QUERY: usize = 4096;
/// UDP queries being answered or forwarded at once.
pub const MAX_IN_FLIGHT: usize = 512;
/// TCP connections at once, and from one source.
pub const TCP_LIMITS: Limits = Limits {
    max_connections: 256,
    max_per_source: Some(16),
};
/// How long a TCP connection may wait for its next query.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries one TCP connection may carry.
pub const TCP_QUERIES: usize = 64;
/// How long an upstream exchange may take.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// Over which transport a query came (and goes upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// What every query is decided with.
pub struct DnsState {
    view: watch::Receiver<Arc<MeshView>>,
    /// The host index of the last view seen, rebuilt when the view changes.
    indexed: Mutex<Option<Indexed>>,
    upstream: Option<Upstream>,
    metrics: DnsMetrics,
}

impl DnsState {
    pub fn new(
        view: watch::Receiver<Arc<MeshView>>,
        upstream: Option<Upstream>,
        metrics: DnsMetrics,
    ) -> Self {
        Self {
            view,
            indexed: Mutex::new(None),
            upstream,
            metrics,
        }
    }

    /// The current view and its host index.
    fn indexed(&self) -> Indexed {
        let view = self.view.borrow().clone();
        let mut cached = self.indexed.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some(indexed) if Arc::ptr_eq(&indexed.view, &view) => indexed.clone(),
            _ => cached.insert(Indexed::new(view)).clone(),
        }
    }

    /// The bytes to send back for `query` from `src`, if any.
    async fn handle(&self, src: SocketAddr, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let Indexed { view, index } = self.indexed();
        let (outcome, reply) = match answer::decide(&view, &index, src, query) {
            Decision::Answer(bytes) => (Outcome::Answered, Some(bytes)),
            Decision::Refuse(bytes) => (Outcome::Refused, Some(bytes)),
            Decision::Drop => (Outcome::Failed, None),
            Decision::Forward => self.forward(src, query, transport).await,
        };
        self.metrics.count(outcome);
        reply
    }

    async fn forward(
        &self,
        src: SocketAddr,
        query: &[u8],
        transport: Transport,
    ) -> (Outcome, Option<Vec<u8>>) {
        let Some(upstream) = &self.upstream else {
            return (Outcome::Failed, answer::servfail(query));
        };
        let relayed = match transport {
            Transport::Udp => upstream.udp(query).await,
            Transport::Tcp => upstream.tcp(query).await,
        };
        match relayed {
            Ok(answer) => (Outcome::Forwarded, Some(answer)),
            Err(error) => {
                tracing::debug!(%src, upstream = %upstream.addr, %error, "DNS forward failed");
                (Outcome::Failed, answer::servfail(query))
            }
        }
    }
}

/// The bound sockets.
pub struct DnsServer {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    state: Arc<DnsState>,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0: the port UDP got, for both).
    pub async fn bind(addr: SocketAddr, state: DnsState) -> io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr).await?;
        tracing::info!(%addr, upstream = ?state.upstream.as_ref().map(|u| u.addr), "DNS proxy ready");
        Ok(Self {
            udp: Arc::new(udp),
            tcp,
            state: Arc::new(state),
        })
    }

    #[cfg(test)]
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }

    /// Serves until the task is dropped.
    pub async fn serve(self) {
        tokio::join!(
            serve_udp(Arc::clone(&self.udp), Arc::clone(&self.state)),
            serve_tcp(self.tcp, Arc::clone(&self.state)),
        );
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, state: Arc<DnsState>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // One byte more than a query may have: a full buffer is too long.
    let mut buf = vec![0u8; MAX_QUERY + 1];
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(error) => {
                tracing::debug!(%error, "DNS receive failed");
                continue;
            }
        };
        if n > MAX_QUERY {
            state.metrics.count(Outcome::Failed);
            continue;
        }
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            state.metrics.count(Outcome::Failed);
            continue;
        };
        let query = buf[..n].to_vec();
        let (socket, state) = (Arc::clone(&socket), Arc::clone(&state));
        tokio::spawn(async move {
            if let Some(reply) = state.handle(src, &query, Transport::Udp).await {
                let _ = socket.send_to(&reply, src).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<DnsState>) {
    let mut listener = Listener::new(listener, TCP_LIMITS, "DNS over TCP");
    loop {
        let accepted = listener.accept().await;
        let (stream, peer, permit) = (accepted.stream, accepted.peer, accepted.permit);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            if let Err(error) = serve_tcp_conn(stream, peer, &state).await {
                tracing::debug!(%peer, %error, "DNS over TCP ended");
            }
            drop(permit);
        });
    }
}

/// Length-prefixed queries, one after the other, until EOF, a cap or idle.
async fn serve_tcp_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: &DnsState,
) -> io::Result<()> {
    for _ in 0..TCP_QUERIES {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        if len > MAX_QUERY {
            state.metrics.count(Outcome::Failed);
            return Ok(());
        }
        let mut query = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "query not sent in time"))??;
        let Some(reply) = state.handle(peer, &query, Transport::Tcp).await else {
            return Ok(());
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        tokio::time::timeout(TCP_IDLE, stream.write_all(&framed))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "answer not taken in time"))??;
    }
    Ok(())
}
