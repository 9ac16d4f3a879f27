//! Totals and a short history of proxied connections, for the admin
//! endpoint, the demo's live summary and the end-to-end tests.
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;

/// How many finished connections are remembered.
const HISTORY: usize = 256;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub id: u64,
    /// `outbound` (captured from a local pod) or `inbound` (HBONE from a peer).
    pub direction: &'static str,
    /// `passthrough`, `local`, `hbone`, or `refused`.
    pub route: &'static str,
    /// SPIFFE identities; empty when a side has none (plaintext).
    pub source_identity: String,
    pub destination_identity: String,
    /// The pod that connected.
    pub source: SocketAddr,
    /// Where the pod meant to go.
    pub original_destination: SocketAddr,
    /// Bytes from the pod to the destination.
    pub bytes_sent: u64,
    /// Bytes from the destination back to the pod.
    pub bytes_received: u64,
    pub duration_ms: u64,
    /// Unix time (ms) the connection was accepted.
    pub opened_at_ms: u64,
    /// Empty on success, else what ended it.
    pub error: String,
}

#[derive(Debug, Default, Serialize, Clone, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub active: u64,
    pub completed: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Accepted, but the kernel had no original destination (not captured).
    pub no_original_destination: u64,
    pub upstream_connect_failed: u64,
}

#[derive(Default)]
pub struct ConnectionStats {
    next_id: AtomicU64,
    accepted: AtomicU64,
    active: AtomicU64,
    completed: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    no_original_destination: AtomicU64,
    upstream_connect_failed: AtomicU64,
    history: Mutex<VecDeque<ConnectionRecord>>,
}

/// A connection in flight; counted active until [`ConnectionStats::finish`].
pub struct Open {
    pub id: u64,
    pub direction: &'static str,
    pub route: &'static str,
    pub source_identity: String,
    pub destination_identity: String,
    pub source: SocketAddr,
    pub original_destination: SocketAddr,
    started: std::time::Instant,
    opened_at: SystemTime,
}

impl ConnectionStats {
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub fn no_original_destination(&self) {
        self.no_original_destination.fetch_add(1, Ordering::Relaxed);
    }

    pub fn open(&self, source: SocketAddr, original_destination: SocketAddr) -> Open {
        self.active.fetch_add(1, Ordering::Relaxed);
        Open {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            direction: "outbound",
            route: "passthrough",
            source_identity: String::new(),
            destination_identity: String::new(),
            source,
            original_destination,
            started: std::time::Instant::now(),
            opened_at: SystemTime::now(),
        }
    }

    pub fn finish(&self, open: Open, sent: u64, received: u64, error: Option<String>) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        self.bytes_received.fetch_add(received, Ordering::Relaxed);
        if error.as_deref().is_some_and(|e| e.starts_with("connect")) {
            self.upstream_connect_failed.fetch_add(1, Ordering::Relaxed);
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let record = ConnectionRecord {
            id: open.id,
            direction: open.direction,
            route: open.route,
            source_identity: open.source_identity,
            destination_identity: open.destination_identity,
            source: open.source,
            original_destination: open.original_destination,
            bytes_sent: sent,
            bytes_received: received,
            duration_ms: ms(open.started.elapsed()),
            opened_at_ms: ms(open
                .opened_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()),
            error: error.unwrap_or_default(),
        };
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(record);
    }

    pub fn totals(&self) -> Totals {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            accepted: get(&self.accepted),
            active: get(&self.active),
            completed: get(&self.completed),
            bytes_sent: get(&self.bytes_sent),
            bytes_received: get(&self.bytes_received),
            no_original_destination: get(&self.no_original_destination),
            upstream_connect_failed: get(&self.upstream_connect_failed),
        }
    }

    /// Finished connections, oldest first.
    pub fn recent(&self) -> Vec<ConnectionRecord> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_moves_a_connection_from_active_to_history() {
        let stats = ConnectionStats::default();
        stats.accepted();
        let open = stats.open(
            "10.0.0.2:1000".parse().unwrap(),
            "10.0.0.3:80".parse().unwrap(),
        );
        assert_eq!(stats.totals().active, 1);
        stats.finish(open, 10, 20, None);
        let t = stats.totals();
        assert_eq!(
            (t.active, t.completed, t.bytes_sent, t.bytes_received),
            (0, 1, 10, 20)
        );
        assert_eq!(
            stats.recent()[0].original_destination,
            "10.0.0.3:80".parse().unwrap()
        );
    }

    #[test]
    fn history_is_bounded() {
        let stats = ConnectionStats::default();
        for _ in 0..HISTORY + 5 {
            let open = stats.open("10.0.0.2:1".parse().unwrap(), "10.0.0.3:2".parse().unwrap());
            stats.finish(open, 0, 0, Some("connect: refused".into()));
        }
        assert_eq!(stats.recent().len(), HISTORY);
        assert_eq!(stats.totals().upstream_connect_failed, HISTORY as u64 + 5);
    }
}
