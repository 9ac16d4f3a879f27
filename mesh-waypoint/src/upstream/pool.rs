//! The HTTP client connection pool of one endpoint of one cluster.
//!
//! HTTP/1.1: one request per connection at a time; a connection whose
//! response has been read goes back to the idle list (until
//! `max_requests_per_connection` or `idle_timeout`). HTTP/2: one
//! multiplexed connection, replaced when it closes or has carried
//! `max_requests_per_connection` streams.
//!
//! Circuit breakers as Envoy: a request that cannot get a ready connection
//! at once is *pending* (counted against `max_pending_requests`, refused
//! with `UO` beyond it) until one is ready; a new connection needs a
//! `max_connections` unit, except the pool's first one.
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use http::{Request, Response};
use hyper::{body::Incoming, client::conn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Notify;

use super::{
    breaker::{Breaker, Guard, Resource},
    cluster::{PoolConfig, Protocol},
    connector::{Connector, Route},
    UpstreamError,
};
use crate::{body::Body, sync::MutexExt};

enum Sender {
    H1(conn::http1::SendRequest<Body>),
    H2(conn::http2::SendRequest<Body>),
}

struct Idle {
    id: u64,
    sender: conn::http1::SendRequest<Body>,
    used: u32,
    /// When it went idle; past `idle_timeout` it is closed.
    since: tokio::time::Instant,
}

struct Shared2 {
    id: u64,
    sender: conn::http2::SendRequest<Body>,
    used: u32,
}

#[derive(Default)]
struct State {
    idle: VecDeque<Idle>,
    h2: Option<Shared2>,
    h2_connecting: bool,
    /// Connections open or being opened.
    open: usize,
    next_id: u64,
    /// The idle timeout last given back with a connection.
    idle_timeout: std::time::Duration,
    /// A sweeper task is closing idle connections as they expire (one per
    /// pool, not one timer per request: at tens of thousands of requests a
    /// second, per-request timers of Istio's 1 h idle timeout pile up).
    sweeping: bool,
}

/// Pool of one endpoint.
pub struct Pool {
    addr: SocketAddr,
    protocol: Protocol,
    state: Mutex<State>,
    /// Woken when a connection becomes idle, closes or an h2 dial ends.
    ready: Notify,
}

/// A connection checked out for one request.
pub struct Lease {
    pool: Arc<Pool>,
    sender: Sender,
    id: u64,
    used: u32,
    cfg: PoolConfig,
    /// Taken from the idle list (may have been closed by the server).
    reused: bool,
}

/// Gives an HTTP/1.1 connection back to its pool.
pub struct Release(Box<dyn FnOnce() + Send>);

impl Release {
    pub fn release(self) {
        (self.0)()
    }
}

/// Clears `h2_connecting` and wakes the waiters when dropped.
struct Connecting(Arc<Pool>);

impl Drop for Connecting {
    fn drop(&mut self) {
        self.0.state.lock_unpoisoned().h2_connecting = false;
        self.0.ready.notify_waiters();
    }
}

/// Held by the task driving a connection: the connection counts until
/// that task ends.
struct ConnGuard {
    pool: Arc<Pool>,
    _breaker: Guard,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut s = self.pool.state.lock_unpoisoned();
        s.open -= 1;
        drop(s);
        self.pool.ready.notify_one();
    }
}

impl Pool {
    pub fn new(addr: SocketAddr, protocol: Protocol) -> Arc<Self> {
        Arc::new(Pool {
            addr,
            protocol,
            state: Mutex::new(State::default()),
            ready: Notify::new(),
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Connections open or being opened.
    pub fn open_connections(&self) -> usize {
        self.state.lock_unpoisoned().open
    }

    /// Sends `req` on a pooled or new connection; returns the response
    /// head and, for HTTP/1.1, the [`Release`] that gives the connection
    /// back once the response body has been read to its end.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<Body>,
        cfg: PoolConfig,
        breaker: &Arc<Breaker>,
        connector: &Connector,
        route: &Route,
    ) -> Result<(Response<Incoming>, Option<Release>), UpstreamError> {
        let mut req = req;
        loop {
            let mut lease = self.acquire(cfg, breaker, connector, route).await?;
            let reused = lease.reused;
            if let Err(e) = lease.ready().await {
                // A pooled connection the server closed meanwhile: another.
                if reused {
                    continue;
                }
                return Err(UpstreamError::Reset(format!("{}: {e}", self.addr)));
            }
            match lease.send(req).await {
                Ok(sent) => return Ok(sent),
                // Not written at all (the pooled connection died just now):
                // safe to send on another one, as hyper-util's client does.
                Err((_, Some(unsent))) if reused => req = unsent,
                Err((e, _)) => return Err(e),
            }
        }
    }

    async fn acquire(
        self: &Arc<Self>,
        cfg: PoolConfig,
        breaker: &Arc<Breaker>,
        connector: &Connector,
        route: &Route,
    ) -> Result<Lease, UpstreamError> {
        let mut pending: Option<Guard> = None;
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            let dial_id = {
                let mut s = self.state.lock_unpoisoned();
                if let Some(lease) = self.checkout(&mut s, cfg) {
                    return Ok(lease);
                }
                if pending.is_none() {
                    pending = Some(
                        breaker
                            .try_acquire(Resource::Pending)
                            .ok_or(UpstreamError::Overflow(Resource::Pending.name()))?,
                    );
                }
                let may_dial = !(self.protocol == Protocol::Http2 && s.h2_connecting);
                let unit = if !may_dial {
                    None
                } else if s.open == 0 {
                    Some(breaker.force_acquire(Resource::Connections))
                } else {
                    breaker.try_acquire(Resource::Connections)
                };
                match unit {
                    Some(unit) => {
                        s.open += 1;
                        s.next_id += 1;
                        if self.protocol == Protocol::Http2 {
                            s.h2_connecting = true;
                        }
                        Some((s.next_id, unit))
                    }
                    None => {
                        notified.as_mut().enable();
                        None
                    }
                }
            };
            match dial_id {
                Some((id, unit)) => {
                    let guard = ConnGuard {
                        pool: Arc::clone(self),
                        _breaker: unit,
                    };
                    return self.dial(id, guard, cfg, connector, route).await;
                }
                None => notified.await,
            }
        }
    }

    /// A ready pooled connection, if any.
    fn checkout(self: &Arc<Self>, s: &mut State, cfg: PoolConfig) -> Option<Lease> {
        match self.protocol {
            Protocol::Http1 => {
                // Given back when the body ended, the connection may not
                // have been marked ready yet: `Lease::ready` waits for it.
                while let Some(idle) = s.idle.pop_back() {
                    if !idle.sender.is_closed() && idle.since.elapsed() < cfg.idle_timeout {
                        return Some(Lease {
                            pool: Arc::clone(self),
                            sender: Sender::H1(idle.sender),
                            id: idle.id,
                            used: idle.used + 1,
                            cfg,
                            reused: true,
                        });
                    }
                }
                None
            }
            Protocol::Http2 => {
                let h2 = s.h2.as_mut()?;
                let spent = cfg.max_requests_per_connection != 0
                    && h2.used >= cfg.max_requests_per_connection;
                if h2.sender.is_closed() || spent {
                    // Streams in flight keep the connection; new ones go to
                    // a new connection.
                    s.h2 = None;
                    return None;
                }
                h2.used += 1;
                Some(Lease {
                    pool: Arc::clone(self),
                    sender: Sender::H2(h2.sender.clone()),
                    id: h2.id,
                    used: h2.used,
                    cfg,
                    reused: true,
                })
            }
        }
    }

    async fn dial(
        self: &Arc<Self>,
        id: u64,
        guard: ConnGuard,
        cfg: PoolConfig,
        connector: &Connector,
        route: &Route,
    ) -> Result<Lease, UpstreamError> {
        // Ends the HTTP/2 "connecting" state however this future ends,
        // also when the request that started the dial is cancelled.
        let _connecting = (self.protocol == Protocol::Http2).then(|| Connecting(Arc::clone(self)));
        let sender = self.handshake(guard, cfg, connector, route).await?;
        let mut s = self.state.lock_unpoisoned();
        let used = 1;
        if let Sender::H2(h2) = &sender {
            s.h2 = Some(Shared2 {
                id,
                sender: h2.clone(),
                used,
            });
            drop(s);
            // Everyone waiting for this connection may now share it.
            self.ready.notify_waiters();
        }
        Ok(Lease {
            pool: Arc::clone(self),
            sender,
            id,
            used,
            cfg,
            reused: false,
        })
    }

    async fn handshake(
        &self,
        guard: ConnGuard,
        cfg: PoolConfig,
        connector: &Connector,
        route: &Route,
    ) -> Result<Sender, UpstreamError> {
        let io = TokioIo::new(
            connector
                .connect(self.addr, route, cfg.connect_timeout)
                .await?,
        );
        let addr = self.addr;
        let failed =
            |e: hyper::Error| UpstreamError::ConnectFailure(format!("{addr}: HTTP handshake: {e}"));
        match self.protocol {
            Protocol::Http1 => {
                let (sender, conn) = conn::http1::handshake(io).await.map_err(failed)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%addr, error = %e, "upstream HTTP/1 connection ended");
                    }
                    drop(guard);
                });
                Ok(Sender::H1(sender))
            }
            Protocol::Http2 => {
                let (sender, conn) = conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(failed)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection ended");
                    }
                    drop(guard);
                });
                Ok(Sender::H2(sender))
            }
        }
    }

    fn checkin(
        self: &Arc<Self>,
        id: u64,
        sender: conn::http1::SendRequest<Body>,
        used: u32,
        cfg: PoolConfig,
    ) {
        if cfg.max_requests_per_connection != 0 && used >= cfg.max_requests_per_connection {
            // Dropping the sender closes the connection.
            return;
        }
        // The idle timer needs a runtime; without one (shutdown) the
        // connection is simply closed.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let start_sweeper = {
            let mut st = self.state.lock_unpoisoned();
            st.idle.push_back(Idle {
                id,
                sender,
                used,
                since: tokio::time::Instant::now(),
            });
            st.idle_timeout = cfg.idle_timeout;
            !std::mem::replace(&mut st.sweeping, true)
        };
        self.ready.notify_one();
        if start_sweeper {
            rt.spawn(sweep(Arc::downgrade(self)));
        }
    }
}

impl Lease {
    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match &mut self.sender {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    /// Sends on this connection; on failure also gives the request back
    /// when it was never written.
    async fn send(
        self,
        req: Request<Body>,
    ) -> Result<(Response<Incoming>, Option<Release>), (UpstreamError, Option<Request<Body>>)> {
        let addr = self.pool.addr;
        let failed = |mut e: conn::TrySendError<Request<Body>>| {
            let unsent = e.take_message();
            (reset_error(addr, e.error()), unsent)
        };
        match self.sender {
            Sender::H1(mut sender) => {
                let resp = sender
                    .try_send_request(origin_form(req))
                    .await
                    .map_err(failed)?;
                let (pool, id, used, cfg) = (self.pool, self.id, self.used, self.cfg);
                let release = Release(Box::new(move || pool.checkin(id, sender, used, cfg)));
                Ok((resp, Some(release)))
            }
            Sender::H2(mut sender) => {
                let resp = sender
                    .try_send_request(absolute_form(req, addr))
                    .await
                    .map_err(failed)?;
                Ok((resp, None))
            }
        }
    }
}

const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// HTTP/1.1 request line `path?query`, `Host` kept (or made from the URI).
fn origin_form(mut req: Request<Body>) -> Request<Body> {
    let uri = req.uri().clone();
    if !req.headers().contains_key(http::header::HOST) {
        if let Some(a) = uri.authority() {
            if let Ok(v) = http::HeaderValue::from_str(a.as_str()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
    }
    if let Some(pq) = uri.path_and_query() {
        if let Ok(u) = http::Uri::builder().path_and_query(pq.clone()).build() {
            *req.uri_mut() = u;
        }
    }
    *req.version_mut() = http::Version::HTTP_11;
    req
}

/// HTTP/2 needs `:scheme` and `:authority`: taken from the URI, else the
/// `Host` header, else the endpoint address; connection headers dropped.
fn absolute_form(mut req: Request<Body>, addr: SocketAddr) -> Request<Body> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| addr.to_string());
    let pq = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.to_string());
    if let Ok(u) = http::Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(pq.as_str())
        .build()
    {
        *req.uri_mut() = u;
    }
    for h in HOP_BY_HOP {
        if h == "te" && req.headers().get(h).is_some_and(|v| v == "trailers") {
            continue;
        }
        req.headers_mut().remove(h);
    }
    req.headers_mut().remove(http::header::HOST);
    *req.version_mut() = http::Version::HTTP_2;
    req
}

/// A send failure: a stream the HTTP/2 server refused (`REFUSED_STREAM`,
/// safe to retry) or any other reset.
fn reset_error(addr: SocketAddr, e: &hyper::Error) -> UpstreamError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return UpstreamError::RefusedStream(format!("{addr}: {e}"));
            }
        }
        source = err.source();
    }
    UpstreamError::Reset(format!("{addr}: {e}"))
}

/// Closes idle connections once they have been idle for the pool's
/// `idle_timeout`; ends when none is left idle (the next give-back starts
/// a new sweeper) or the pool is gone.
async fn sweep(pool: std::sync::Weak<Pool>) {
    loop {
        let next = {
            let Some(pool) = pool.upgrade() else { return };
            let mut s = pool.state.lock_unpoisoned();
            let timeout = s.idle_timeout;
            let before = s.idle.len();
            s.idle
                .retain(|c| c.since.elapsed() < timeout && !c.sender.is_closed());
            if s.idle.len() < before {
                tracing::debug!(addr = %pool.addr, closed = before - s.idle.len(), "idle upstream connections closed");
            }
            match s.idle.iter().map(|c| c.since).min() {
                Some(oldest) => oldest + timeout,
                None => {
                    s.sweeping = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_forms() {
        let req = Request::builder()
            .uri("http://reviews:9080/a?b=1")
            .header("connection", "keep-alive")
            .body(crate::body::empty())
            .unwrap();
        let h1 = origin_form(req);
        assert_eq!(h1.uri(), "/a?b=1");
        assert_eq!(h1.headers()["host"], "reviews:9080");
        let req = Request::builder()
            .uri("/a")
            .header("host", "reviews:9080")
            .header("connection", "keep-alive")
            .header("te", "trailers")
            .body(crate::body::empty())
            .unwrap();
        let h2 = absolute_form(req, "10.0.0.1:80".parse().unwrap());
        assert_eq!(h2.uri(), "http://reviews:9080/a");
        assert!(h2.headers().get("connection").is_none());
        assert!(h2.headers().get("host").is_none());
        assert_eq!(h2.headers()["te"], "trailers");
    }
}
