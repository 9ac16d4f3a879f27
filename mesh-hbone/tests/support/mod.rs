//! Shared test fixtures: a throwaway CA issuing SPIFFE leaf certificates,
//! a scriptable CONNECT handler, and servers on loopback port 0.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use mesh_hbone::{
    CertStore, ConnectHandler, ConnectRequest, HandlerFuture, HboneServer, Identity, RelayOutcome,
    ServerStats, Upstream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub const TD: &str = "cluster.local";

/// Every test body runs under this bound, so a hang fails instead of
/// stalling the suite.
pub async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("test did not finish within 60 s")
}

/// How long a test waits for the server to show a state (with
/// `mesh_testkit::eventually_async`).
pub const WAIT: Duration = Duration::from_secs(5);

pub fn id(ns: &str, sa: &str) -> Identity {
    Identity::new(TD, ns, sa).unwrap()
}

pub use mesh_hbone::test_ca::TestCa;

/// Hex serial (as `WorkloadCert::serial`) of a DER leaf.
pub fn serial_of(der: &rustls::pki_types::CertificateDer<'_>) -> String {
    mesh_hbone::parse_leaf(der).unwrap().serial
}

pub fn serial_hex(n: u64) -> String {
    format!("{n:x}")
}

/// Behaviour chosen by the CONNECT authority's port.
pub const ECHO_PORT: u16 = 7;
/// Writes `SERVER_FIRST` then half-closes, then counts what the client
/// sends and reports it on `received`.
pub const SERVER_FIRST_PORT: u16 = 9;
pub const SERVER_FIRST: &[u8] = b"hello from the upstream";
pub const FORBIDDEN_PORT: u16 = 403;

#[derive(Default)]
pub struct TestHandler {
    pub requests: Mutex<Vec<ConnectRequest>>,
    pub outcomes: Mutex<Vec<(u64, u64, bool)>>,
    pub received: Mutex<Vec<u64>>,
    pub calls: AtomicUsize,
}

impl TestHandler {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn last_request(&self) -> ConnectRequest {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }
}

/// The handler the server owns; the test keeps the other `Arc`.
pub struct SharedHandler(pub Arc<TestHandler>);

impl ConnectHandler for SharedHandler {
    fn handle(&self, request: ConnectRequest) -> HandlerFuture {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        self.0.requests.lock().unwrap().push(request.clone());
        let me = self.0.clone();
        Box::pin(async move {
            let (ours, theirs) = tokio::io::duplex(256 * 1024);
            match request.authority.port() {
                FORBIDDEN_PORT => return Err(StatusCode::FORBIDDEN),
                ECHO_PORT => {
                    tokio::spawn(async move {
                        let (mut r, mut w) = tokio::io::split(ours);
                        tokio::io::copy(&mut r, &mut w).await.unwrap();
                        w.shutdown().await.unwrap();
                    });
                }
                SERVER_FIRST_PORT => {
                    tokio::spawn(async move {
                        let (mut r, mut w) = tokio::io::split(ours);
                        w.write_all(SERVER_FIRST).await.unwrap();
                        w.shutdown().await.unwrap();
                        let mut sink = Vec::new();
                        r.read_to_end(&mut sink).await.unwrap();
                        me.received.lock().unwrap().push(sink.len() as u64);
                    });
                }
                _ => return Err(StatusCode::BAD_GATEWAY),
            }
            Ok(Box::new(theirs) as Box<dyn Upstream>)
        })
    }

    fn finished(&self, _request: &ConnectRequest, outcome: &RelayOutcome) {
        self.0.outcomes.lock().unwrap().push((
            outcome.bytes_in,
            outcome.bytes_out,
            outcome.error.is_none(),
        ));
    }
}

pub struct RunningServer {
    pub addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    pub handler: Arc<TestHandler>,
    pub task: JoinHandle<()>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_server(store: Arc<CertStore>) -> RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_server_on(listener, store, std::future::pending()).await
}

/// A server bound to `pinned` (a pod's own listener).
pub async fn start_pinned_server(store: Arc<CertStore>, pinned: &Identity) -> RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_server_with(
        listener,
        store,
        Some(pinned.clone()),
        std::future::pending(),
    )
    .await
}

pub async fn start_server_on(
    listener: TcpListener,
    store: Arc<CertStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> RunningServer {
    start_server_with(listener, store, None, shutdown).await
}

pub async fn start_server_with(
    listener: TcpListener,
    store: Arc<CertStore>,
    pinned: Option<Identity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> RunningServer {
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(TestHandler::default());
    let mut server = HboneServer::new(store, Arc::new(SharedHandler(handler.clone())));
    if let Some(pinned) = pinned {
        server = server.with_identity(pinned);
    }
    let stats = server.stats();
    let task = tokio::spawn(async move {
        server
            .serve_with_shutdown(listener, shutdown)
            .await
            .unwrap()
    });
    RunningServer {
        addr,
        stats,
        handler,
        task,
    }
}

/// Deterministic, non-repeating-looking test payload.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn authority(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 244, 1, 7], port))
}
