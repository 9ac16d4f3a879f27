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
    ServerStats, TrustBundle, Upstream, WorkloadCert,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
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

/// Polls `cond` every 10 ms for up to 5 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s: {what}");
}

pub fn id(ns: &str, sa: &str) -> Identity {
    Identity::new(TD, ns, sa).unwrap()
}

pub struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        TestCa { key, cert }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::from_pem(self.pem()).unwrap()
    }

    /// PEM chain and PEM key of a leaf with the given URI SANs.
    pub fn issue_pem(&self, uris: &[String], serial: u64, valid_for: Duration) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI(u.clone().try_into().unwrap()))
            .collect();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.serial_number = Some(SerialNumber::from(serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::try_from(valid_for).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn issue(&self, identity: &Identity, serial: u64) -> WorkloadCert {
        self.issue_for(identity, serial, Duration::from_secs(24 * 3600))
    }

    pub fn issue_for(&self, identity: &Identity, serial: u64, valid_for: Duration) -> WorkloadCert {
        let (chain, key) = self.issue_pem(&[identity.to_string()], serial, valid_for);
        WorkloadCert::from_pem(chain, key).unwrap()
    }

    /// A store trusting this CA and holding certificates for `ids`.
    pub fn store(&self, ids: &[&Identity]) -> Arc<CertStore> {
        let store = Arc::new(CertStore::new(self.bundle()));
        for (n, identity) in ids.iter().enumerate() {
            store.insert(self.issue(identity, 100 + n as u64));
        }
        store
    }
}

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

pub async fn start_server_on(
    listener: TcpListener,
    store: Arc<CertStore>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> RunningServer {
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(TestHandler::default());
    let server = HboneServer::new(store, Arc::new(SharedHandler(handler.clone())));
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
