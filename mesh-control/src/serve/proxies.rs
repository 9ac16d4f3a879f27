//! Who is connected and what they have: per ADS stream the node id and, per
//! type URL, the last response sent and whether it was ACKed or NACKed. The
//! data behind `meshctl proxy-status` (served as `/debug/syncz`).
//!
//! A stream is sent a response for a type only when something of that type
//! changed for it, so "the last response carries the server version" alone
//! would call a proxy stale whenever another type changed. We therefore also
//! record the server generation at which the stream was last found to need
//! nothing more ([`TypeStatus::checked_version`]); see [`SyncStatus`].
//!
//! Each stream also counts the mesh-state updates evaluated for it
//! ([`ProxyStatus::evaluated_updates`]), those that changed no resource
//! included, so a caller can tell "nothing was sent" from "not looked at yet".
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
    /// The latest server generation this stream's type was brought up to
    /// date with (by a response, or by finding nothing to send). 0: never.
    pub checked_version: u64,
}

/// What `meshctl proxy-status` shows per type, as defined in
/// docs/contracts/control-admin.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// The last response was ACKed and the stream is at the server version.
    Synced,
    /// Subscribed, but no response has been sent yet.
    NotSent,
    /// Sent but not ACKed yet, or ACKed an older server version.
    Stale,
    /// The last response was rejected.
    Nacked,
}

impl SyncStatus {
    /// The wire spelling (`SYNCED`, `NOT SENT`, `STALE`, `NACKED`).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "SYNCED",
            SyncStatus::NotSent => "NOT SENT",
            SyncStatus::Stale => "STALE",
            SyncStatus::Nacked => "NACKED",
        }
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TypeStatus {
    /// The status against the server's current generation.
    pub fn status(&self, server_version: u64) -> SyncStatus {
        if self.last_sent_nonce.is_empty() {
            return SyncStatus::NotSent;
        }
        if self
            .last_nack
            .as_ref()
            .is_some_and(|n| n.nonce == self.last_sent_nonce)
        {
            return SyncStatus::Nacked;
        }
        if self.acked && self.checked_version >= server_version {
            SyncStatus::Synced
        } else {
            SyncStatus::Stale
        }
    }
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
    /// Mesh-state updates the resource builder evaluated since the stream
    /// connected: one that changed no resource counts when the builder has
    /// compared it; one that changed some, once every type the stream
    /// subscribes to was brought up to date with it (sent or found to need
    /// nothing).
    pub evaluated_updates: u64,
    /// The server generation every subscribed type has been brought up to
    /// (at least the one current when the stream connected).
    caught_up_version: u64,
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
            // Generations the stream has now caught up with count as
            // evaluated for it.
            let caught_up = p.types.values().map(|t| t.checked_version).min();
            if let Some(caught_up) = caught_up.filter(|v| *v > p.caught_up_version) {
                p.evaluated_updates += caught_up - p.caught_up_version;
                p.caught_up_version = caught_up;
            }
        }
    }

    /// The resource builder evaluated a mesh-state update that changed no
    /// resource: every stream has all it needs of it.
    pub(crate) fn evaluated_unchanged(&self) {
        for p in self.lock().values_mut() {
            p.evaluated_updates += 1;
        }
    }

    pub(crate) fn connected(&self, stream_id: u64, peer: Option<SocketAddr>) {
        let status = ProxyStatus {
            stream_id,
            node_id: String::new(),
            peer,
            connected_at: SystemTime::now(),
            types: BTreeMap::new(),
            evaluated_updates: 0,
            caught_up_version: self.server_version(),
        };
        self.lock().insert(stream_id, status);
    }

    pub(crate) fn set_node(&self, stream_id: u64, node_id: &str) {
        if let Some(p) = self.lock().get_mut(&stream_id) {
            p.node_id = node_id.to_string();
        }
    }

    /// The stream subscribed to `type_url` (its first request of that type).
    pub(crate) fn subscribed(&self, stream_id: u64, type_url: &str) {
        self.with_type(stream_id, type_url, |_| {});
    }

    /// A push of `type_url` at server generation `version` found nothing to
    /// send: once the last response is ACKed the stream holds that state.
    pub(crate) fn up_to_date(&self, stream_id: u64, type_url: &str, version: u64) {
        self.with_type(stream_id, type_url, |t| {
            t.checked_version = t.checked_version.max(version);
        });
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
            t.checked_version = version;
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

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "type.googleapis.com/istio.workload.Address";
    const U: &str = "type.googleapis.com/istio.security.Authorization";

    fn status(p: &ConnectedProxies, type_url: &str) -> SyncStatus {
        p.list()[0].types[type_url].status(p.server_version())
    }

    #[test]
    fn statuses_follow_sends_acks_and_nacks() {
        let p = ConnectedProxies::new();
        p.set_server_version(1);
        p.connected(7, None);
        p.set_node(7, "agent~node1");
        p.subscribed(7, T);
        assert_eq!(status(&p, T), SyncStatus::NotSent);

        p.sent(7, T, 1, "n1", 3);
        assert_eq!(status(&p, T), SyncStatus::Stale, "sent, not ACKed");
        p.acked(7, T, "n1");
        assert_eq!(status(&p, T), SyncStatus::Synced);

        // A new generation: stale until pushed and ACKed.
        p.set_server_version(2);
        assert_eq!(status(&p, T), SyncStatus::Stale);
        p.sent(7, T, 2, "n2", 4);
        p.nacked(7, T, "n2", "bad address", 3);
        assert_eq!(status(&p, T), SyncStatus::Nacked);
        let nack = p.list()[0].types[T].last_nack.clone().unwrap();
        assert_eq!(
            (nack.nonce.as_str(), nack.message.as_str()),
            ("n2", "bad address")
        );

        // The next response is ACKed: synced again, the NACK kept for diagnosis.
        p.set_server_version(3);
        p.sent(7, T, 3, "n3", 4);
        p.acked(7, T, "n3");
        assert_eq!(status(&p, T), SyncStatus::Synced);
        assert!(p.list()[0].types[T].last_nack.is_some());

        // A stale ACK of an older nonce does not count for the newer response.
        p.set_server_version(4);
        p.sent(7, T, 4, "n4", 4);
        p.acked(7, T, "n3");
        assert_eq!(status(&p, T), SyncStatus::Stale);
    }

    #[test]
    fn a_type_with_nothing_new_is_synced_at_the_new_generation() {
        let p = ConnectedProxies::new();
        p.set_server_version(1);
        p.connected(1, None);
        p.subscribed(1, U);
        p.sent(1, U, 1, "a", 1);
        p.acked(1, U, "a");
        // Generation 2 changed only another type: this one had nothing to send.
        p.set_server_version(2);
        assert_eq!(status(&p, U), SyncStatus::Stale);
        p.up_to_date(1, U, 2);
        assert_eq!(status(&p, U), SyncStatus::Synced);
        assert_eq!(p.list()[0].types[U].last_sent_version, "1");
        // Up to date while the last response is still un-ACKed is not synced.
        p.sent(1, U, 3, "b", 1);
        p.set_server_version(4);
        p.up_to_date(1, U, 4);
        assert_eq!(status(&p, U), SyncStatus::Stale);
        p.acked(1, U, "b");
        assert_eq!(status(&p, U), SyncStatus::Synced);
    }

    #[test]
    fn updates_count_as_evaluated_once_the_stream_has_caught_up() {
        let p = ConnectedProxies::new();
        p.set_server_version(3);
        p.connected(1, None);
        p.subscribed(1, T);
        p.subscribed(1, U);
        let evaluated = |p: &ConnectedProxies| p.list()[0].evaluated_updates;
        p.sent(1, T, 3, "a", 1);
        p.sent(1, U, 3, "b", 1);
        assert_eq!(evaluated(&p), 0, "generations before the connection");

        // An update that changed nothing is evaluated for every stream.
        p.evaluated_unchanged();
        assert_eq!(evaluated(&p), 1);

        // One that changed something: once every type is up to date with it.
        p.set_server_version(4);
        p.sent(1, T, 4, "c", 2);
        assert_eq!(evaluated(&p), 1, "the other type is not checked yet");
        p.up_to_date(1, U, 4);
        assert_eq!(evaluated(&p), 2);

        // Two generations caught up at once count twice.
        p.set_server_version(6);
        p.up_to_date(1, T, 6);
        p.sent(1, U, 6, "d", 1);
        assert_eq!(evaluated(&p), 4);
    }

    #[test]
    fn disconnect_removes_the_stream() {
        let p = ConnectedProxies::new();
        p.connected(1, Some("10.0.0.1:4000".parse().unwrap()));
        p.connected(2, None);
        p.set_node(1, "b");
        p.set_node(2, "a");
        assert_eq!(
            p.list()
                .iter()
                .map(|s| s.node_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        p.disconnected(1);
        assert_eq!(p.len(), 1);
        assert!(p.by_node("b").is_empty());
    }
}
