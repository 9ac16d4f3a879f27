//! Totals, the open connections and a short history of proxied
//! connections, for the admin endpoint, the demo's live summary and the
//! end-to-end tests. Every connection goes through [`ConnectionStats::open`]
//! and [`ConnectionStats::finish`], so this is also where Istio's TCP metrics
//! and the access log are recorded.
use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use serde::Serialize;

use super::outcome::{Carried, ConnError, Direction};
use crate::metrics::{
    labels::{response_flags, ConnLabels, Reporter, TcpLabels, UNKNOWN},
    LiveBytes, TcpMetrics,
};

/// How many finished connections are remembered.
const HISTORY: usize = 256;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionRecord {
    pub id: u64,
    /// `outbound` (captured from a local pod) or `inbound` (HBONE from a peer).
    pub direction: Direction,
    /// `passthrough`, `local`, `kernel`, `hbone`, `refused` or `denied`.
    pub route: Carried,
    /// SPIFFE identities; empty when a side has none (plaintext).
    pub source_identity: String,
    pub destination_identity: String,
    /// Workload names (Istio's `*_workload`), `unknown` when not known.
    pub source_workload: String,
    pub destination_workload: String,
    /// Hostname of the Service dialled, `unknown` if none.
    pub service: String,
    /// The pod that connected (inbound: the tunnel's source, the source pod
    /// or the waypoint or gateway that carried it).
    pub source: SocketAddr,
    /// Where the pod meant to go.
    pub original_destination: SocketAddr,
    /// Where the agent connected or tunnelled to (the chosen endpoint).
    pub upstream: Option<SocketAddr>,
    /// Bytes from the pod to the destination.
    pub bytes_sent: u64,
    /// Bytes from the destination back to the pod.
    pub bytes_received: u64,
    pub duration_ms: u64,
    /// Unix time (ms) the connection was accepted.
    pub opened_at_ms: u64,
    /// Istio's response flags: `-`, `UF`, `NR`, `DENY`.
    pub response_flags: &'static str,
    /// Empty on success, else what ended it.
    pub error: String,
}

/// An open connection, as `/stats/connections` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ActiveConnection {
    pub id: u64,
    pub direction: Direction,
    pub route: Carried,
    pub source: SocketAddr,
    pub original_destination: SocketAddr,
    pub upstream: Option<SocketAddr>,
    pub source_identity: String,
    pub destination_identity: String,
    pub source_workload: String,
    pub destination_workload: String,
    pub service: String,
    pub opened_at_ms: u64,
    /// Filled in when listed.
    pub duration_ms: u64,
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
    open: Mutex<HashMap<u64, (ActiveConnection, std::time::Instant)>>,
    /// `None`: metrics disabled (`--metrics=false`), nothing recorded.
    metrics: Option<TcpMetrics>,
}

/// A connection in flight; counted active until [`ConnectionStats::finish`].
pub struct Open {
    pub id: u64,
    pub direction: Direction,
    pub route: Carried,
    pub source_identity: String,
    pub destination_identity: String,
    pub source: SocketAddr,
    pub original_destination: SocketAddr,
    /// Where the agent connects or tunnels to, once routed.
    pub upstream: Option<SocketAddr>,
    started: std::time::Instant,
    opened_at: SystemTime,
    /// Set by [`ConnectionStats::begin`]; `None` until then.
    labels: Option<ConnLabels>,
    /// Who reported the open (kept so the close matches it even if the
    /// route changes in between, e.g. to `denied`).
    reporters: &'static [Reporter],
    /// What the relay moved so far; the metrics read it while open.
    pub live: Arc<LiveBytes>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(t: SystemTime) -> u64 {
    ms(t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

/// Who reports a connection: the source side for outbound, the destination
/// side for inbound, and both for local delivery, where this agent is both.
fn reporters(direction: Direction, route: Carried) -> &'static [Reporter] {
    match (direction, route) {
        (Direction::Inbound, _) => &[Reporter::Destination],
        (Direction::Outbound, Carried::Local | Carried::Kernel) => {
            &[Reporter::Source, Reporter::Destination]
        }
        (Direction::Outbound, _) => &[Reporter::Source],
    }
}

fn service_name(labels: Option<&ConnLabels>) -> String {
    labels
        .and_then(|l| l.service.as_ref())
        .map_or_else(|| UNKNOWN.to_string(), |s| s.hostname.clone())
}

impl Open {
    fn active(&self) -> ActiveConnection {
        let workload = |f: fn(&ConnLabels) -> &String| {
            self.labels
                .as_ref()
                .map_or_else(|| UNKNOWN.to_string(), |l| f(l).clone())
        };
        ActiveConnection {
            id: self.id,
            direction: self.direction,
            route: self.route,
            source: self.source,
            original_destination: self.original_destination,
            upstream: self.upstream,
            source_identity: self.source_identity.clone(),
            destination_identity: self.destination_identity.clone(),
            source_workload: workload(|l| &l.source.workload),
            destination_workload: workload(|l| &l.destination.workload),
            service: service_name(self.labels.as_ref()),
            opened_at_ms: unix_ms(self.opened_at),
            duration_ms: 0,
        }
    }
}

impl ConnectionStats {
    /// `metrics`: where Istio's TCP metrics go; `None` records none.
    pub fn new(metrics: Option<TcpMetrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub fn no_original_destination(&self) {
        self.no_original_destination.fetch_add(1, Ordering::Relaxed);
    }

    pub fn open(&self, source: SocketAddr, original_destination: SocketAddr) -> Open {
        self.active.fetch_add(1, Ordering::Relaxed);
        let open = Open {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            direction: Direction::Outbound,
            route: Carried::Passthrough,
            source_identity: String::new(),
            destination_identity: String::new(),
            source,
            original_destination,
            upstream: None,
            started: std::time::Instant::now(),
            opened_at: SystemTime::now(),
            labels: None,
            reporters: &[],
            live: Arc::default(),
        };
        self.lock_open()
            .insert(open.id, (open.active(), open.started));
        open
    }

    fn lock_open(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (ActiveConnection, std::time::Instant)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection is routed and its peers are known: count it opened
    /// (Istio's `connections_opened`, per reporter) and show what it is in
    /// the open list. Call after setting `direction` and `route`.
    pub fn begin(&self, open: &mut Open, labels: ConnLabels) {
        self.count_opened(open, labels);
        self.lock_open()
            .insert(open.id, (open.active(), open.started));
    }

    fn count_opened(&self, open: &mut Open, labels: ConnLabels) {
        open.reporters = reporters(open.direction, open.route);
        if let Some(metrics) = &self.metrics {
            let sets = open
                .reporters
                .iter()
                .map(|reporter| TcpLabels::new(&labels, *reporter, "-"))
                .collect();
            metrics.opened(open.id, sets, Arc::clone(&open.live));
        }
        open.labels = Some(labels);
    }

    /// Ends `open`: every connection opened is finished here exactly once,
    /// `error` saying why it failed, if it did. `sent`/`received`: the bytes
    /// a path that does not count into [`Open::live`] moved (what the relay
    /// counted there is taken when larger, also after a relay error).
    pub fn finish(&self, mut open: Open, sent: u64, received: u64, error: Option<ConnError>) {
        let (live_sent, live_received) = open.live.load();
        let (sent, received) = (sent.max(live_sent), received.max(live_received));
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        self.bytes_received.fetch_add(received, Ordering::Relaxed);
        if error
            .as_ref()
            .is_some_and(ConnError::is_upstream_connect_failure)
        {
            self.upstream_connect_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.lock_open().remove(&open.id);
        if open.labels.is_none() {
            // Ended before `begin` (or a path that never calls it): still
            // one open and one close, with what is known.
            self.count_opened(&mut open, ConnLabels::unknown());
        }
        let flags = response_flags(error.as_ref());
        let labels = open.labels.take().unwrap_or_else(ConnLabels::unknown);
        if let Some(metrics) = &self.metrics {
            let sets: Vec<TcpLabels> = open
                .reporters
                .iter()
                .map(|reporter| TcpLabels::new(&labels, *reporter, flags))
                .collect();
            metrics.closed(open.id, &sets, sent, received);
        }
        let record = ConnectionRecord {
            id: open.id,
            direction: open.direction,
            route: open.route,
            source_identity: open.source_identity,
            destination_identity: open.destination_identity,
            source_workload: labels.source.workload.clone(),
            destination_workload: labels.destination.workload.clone(),
            service: service_name(Some(&labels)),
            source: open.source,
            original_destination: open.original_destination,
            upstream: open.upstream,
            bytes_sent: sent,
            bytes_received: received,
            duration_ms: ms(open.started.elapsed()),
            opened_at_ms: unix_ms(open.opened_at),
            response_flags: flags,
            error: error.map(|e| e.to_string()).unwrap_or_default(),
        };
        crate::access_log::emit(&record, open.reporters);
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

    /// Open connections, oldest first.
    pub fn active(&self) -> Vec<ActiveConnection> {
        let mut list: Vec<ActiveConnection> = self
            .lock_open()
            .values()
            .map(|(conn, started)| ActiveConnection {
                duration_ms: ms(started.elapsed()),
                ..conn.clone()
            })
            .collect();
        list.sort_by_key(|c| c.id);
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> ConnError {
        ConnError::Connect(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    }

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
            stats.finish(open, 0, 0, Some(refused()));
        }
        assert_eq!(stats.recent().len(), HISTORY);
        assert_eq!(stats.totals().upstream_connect_failed, HISTORY as u64 + 5);
    }

    #[test]
    fn open_connections_are_listed_until_finished() {
        let stats = ConnectionStats::default();
        let mut open = stats.open(
            "10.0.0.2:1000".parse().unwrap(),
            "10.0.0.3:80".parse().unwrap(),
        );
        open.route = Carried::Local;
        let mut labels = ConnLabels::unknown();
        labels.source.workload = "web".into();
        stats.begin(&mut open, labels);
        let active = stats.active();
        assert_eq!(active.len(), 1);
        assert_eq!(
            (active[0].route, active[0].source_workload.as_str()),
            (Carried::Local, "web")
        );
        stats.finish(open, 1, 2, None);
        assert!(stats.active().is_empty());
        assert_eq!(stats.recent()[0].source_workload, "web");
    }

    #[test]
    fn local_delivery_is_reported_by_both_sides_and_denial_is_deny() {
        let tcp = TcpMetrics::default();
        let metrics = crate::metrics::Metrics::new(tcp.clone(), None);
        let stats = ConnectionStats::new(Some(tcp));
        let mut open = stats.open(
            "10.0.0.2:1000".parse().unwrap(),
            "10.0.0.3:80".parse().unwrap(),
        );
        open.route = Carried::Local;
        stats.begin(&mut open, ConnLabels::unknown());
        // The policy check runs after routing and turns the route to denied.
        open.route = Carried::Denied;
        let denied = ConnError::Denied {
            policy: "default/deny-all".into(),
        };
        stats.finish(open, 0, 0, Some(denied));
        let text = metrics.encode().unwrap();
        use crate::metrics::tests::value;
        for reporter in ["source", "destination"] {
            let opened = [("reporter", reporter), ("response_flags", "-")];
            assert_eq!(
                value(&text, "istio_tcp_connections_opened_total", &opened),
                Some(1.0),
                "{text}"
            );
            let closed = [("reporter", reporter), ("response_flags", "DENY")];
            assert_eq!(
                value(&text, "istio_tcp_connections_closed_total", &closed),
                Some(1.0),
                "{text}"
            );
        }
        assert_eq!(stats.recent()[0].response_flags, "DENY");
    }

    #[test]
    fn a_connection_finished_without_begin_is_still_opened_once() {
        let tcp = TcpMetrics::default();
        let metrics = crate::metrics::Metrics::new(tcp.clone(), None);
        let stats = ConnectionStats::new(Some(tcp));
        let mut open = stats.open("10.0.0.2:1".parse().unwrap(), "10.0.0.3:2".parse().unwrap());
        open.route = Carried::Refused;
        let no_endpoints = crate::route::RefuseReason::NoEndpoints {
            service: "default/svc".into(),
        };
        stats.finish(open, 0, 0, Some(ConnError::NoRoute(no_endpoints)));
        let text = metrics.encode().unwrap();
        use crate::metrics::tests::value;
        assert_eq!(
            value(
                &text,
                "istio_tcp_connections_opened_total",
                &[("reporter", "source")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "istio_tcp_connections_closed_total",
                &[("response_flags", "NR")]
            ),
            Some(1.0)
        );
        assert!(stats.active().is_empty());
    }
}
