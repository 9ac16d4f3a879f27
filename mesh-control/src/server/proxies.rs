//! Who is connected and what they have: per ADS stream the node id and, per
//! type URL, the last response sent and whether it was ACKed or NACKed. The
//! data behind `meshctl proxy-status`.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::SystemTime,
};

/// A rejected response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub nonce: String,
    /// The client's `error_detail.message`.
    pub message: String,
    pub at: SystemTime,
}

/// One type URL on one stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeStatus {
    /// `system_version_info` (server generation) of the last response sent.
    pub last_sent_version: String,
    pub last_sent_nonce: String,
    pub last_sent_at: Option<SystemTime>,
    /// True when the last response sent was ACKed.
    pub acked: bool,
    pub last_acked_nonce: Option<String>,
    /// The last NACK (kept after later ACKs, for diagnosis).
    pub last_nack: Option<Nack>,
    /// Number of resources of this type the client holds, as we track it.
    pub resources: usize,
}

/// One connected ADS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyStatus {
    /// Unique per stream for this process.
    pub stream_id: u64,
    /// `Node.id` of the first request ("" until it arrives).
    pub node_id: String,
    pub peer: Option<SocketAddr>,
    pub connected_at: SystemTime,
    pub types: BTreeMap<String, TypeStatus>,
}

/// Shared registry, written by the ADS streams, readable by anyone.
#[derive(Debug, Default)]
pub struct ConnectedProxies {
    streams: Mutex<BTreeMap<u64, ProxyStatus>>,
    server_version: AtomicU64,
}

impl ConnectedProxies {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every connected stream, ordered by node id then stream id.
    pub fn list(&self) -> Vec<ProxyStatus> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| (&a.node_id, a.stream_id).cmp(&(&b.node_id, b.stream_id)));
        all
    }

    /// The streams of one node (normally one; two during a reconnect race).
    pub fn by_node(&self, node_id: &str) -> Vec<ProxyStatus> {
        self.list()
            .into_iter()
            .filter(|p| p.node_id == node_id)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The server's current resource generation: a proxy whose
    /// `last_sent_version` is lower has not been sent the latest state yet.
    pub fn server_version(&self) -> u64 {
        self.server_version.load(Ordering::Relaxed)
    }

    pub(crate) fn set_server_version(&self, v: u64) {
        self.server_version.store(v, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_type(&self, stream_id: u64, type_url: &str, f: impl FnOnce(&mut TypeStatus)) {
        if let Some(p) = self.lock().get_mut(&stream_id) {
            f(p.types.entry(type_url.to_string()).or_default());
        }
    }

    pub(crate) fn connected(&self, stream_id: u64, peer: Option<SocketAddr>) {
        let status = ProxyStatus {
            stream_id,
            node_id: String::new(),
            peer,
            connected_at: SystemTime::now(),
            types: BTreeMap::new(),
        };
        self.lock().insert(stream_id, status);
    }

    pub(crate) fn set_node(&self, stream_id: u64, node_id: &str) {
        if let Some(p) = self.lock().get_mut(&stream_id) {
            p.node_id = node_id.to_string();
        }
    }

    pub(crate) fn sent(
        &self,
        stream_id: u64,
        type_url: &str,
        version: u64,
        nonce: &str,
        held: usize,
    ) {
        self.with_type(stream_id, type_url, |t| {
            t.last_sent_version = version.to_string();
            t.last_sent_nonce = nonce.to_string();
            t.last_sent_at = Some(SystemTime::now());
            t.acked = false;
            t.resources = held;
        });
    }

    pub(crate) fn acked(&self, stream_id: u64, type_url: &str, nonce: &str) {
        self.with_type(stream_id, type_url, |t| {
            t.last_acked_nonce = Some(nonce.to_string());
            if t.last_sent_nonce == nonce {
                t.acked = true;
            }
        });
    }

    pub(crate) fn nacked(
        &self,
        stream_id: u64,
        type_url: &str,
        nonce: &str,
        message: &str,
        held: usize,
    ) {
        self.with_type(stream_id, type_url, |t| {
            t.last_nack = Some(Nack {
                nonce: nonce.to_string(),
                message: message.to_string(),
                at: SystemTime::now(),
            });
            t.resources = held;
        });
    }

    pub(crate) fn disconnected(&self, stream_id: u64) {
        self.lock().remove(&stream_id);
    }
}
