//! The gateway's open `tcp_proxy` connections, so their bytes reach
//! `istio_tcp_sent_bytes_total` / `istio_tcp_received_bytes_total` while
//! they are open: the relay counts into each connection's
//! [`LiveBytes`] (one relaxed atomic add per read or write), each scrape
//! folds what moved since the previous one into the counters, and the
//! close adds the remainder.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use mesh_hbone::LiveBytes;

use super::tcp::{TcpLabels, TcpMetrics};
use crate::sync::MutexExt;

/// An open connection's entry; given back at close.
#[derive(Debug)]
#[must_use = "an open connection is closed with its token"]
pub struct OpenToken(u64);

#[derive(Debug)]
struct Open {
    labels: TcpLabels,
    live: Arc<LiveBytes>,
    /// (received, sent) already added to the counters.
    reported: (u64, u64),
}

/// Open connections by token.
#[derive(Debug, Default)]
pub struct OpenConns {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Open>>,
}

impl OpenConns {
    /// Tracks a connection labelled `labels` whose relay counts into
    /// `live` (request = received from downstream, response = sent to it).
    pub fn insert(&self, labels: TcpLabels, live: Arc<LiveBytes>) -> OpenToken {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let open = Open {
            labels,
            live,
            reported: (0, 0),
        };
        self.conns.lock_unpoisoned().insert(id, open);
        OpenToken(id)
    }

    /// Adds to `metrics` what every open connection moved since the last
    /// fold (runs at each scrape).
    pub fn fold(&self, metrics: &TcpMetrics) {
        for open in self.conns.lock_unpoisoned().values_mut() {
            let (received, sent) = open.live.load();
            let (r0, s0) = open.reported;
            metrics.add_bytes(&open.labels, sent - s0, received - r0);
            open.reported = (received, sent);
        }
    }

    /// Forgets the connection; (received, sent) already reported.
    pub fn remove(&self, token: OpenToken) -> (u64, u64) {
        self.conns
            .lock_unpoisoned()
            .remove(&token.0)
            .map_or((0, 0), |o| o.reported)
    }
}
