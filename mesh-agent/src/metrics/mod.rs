//! Prometheus metrics, served on `--metrics-addr` (default `0.0.0.0:15020`)
//! at `/metrics` and `/stats/prometheus` in the OpenMetrics text format.
//!
//! Istio's TCP metrics, with Istio's names and labels so existing dashboards
//! and Kiali work (labels: see [`labels::TcpLabels`]):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `istio_tcp_connections_opened_total` | counter | connections opened |
//! | `istio_tcp_connections_closed_total` | counter | connections closed |
//! | `istio_tcp_sent_bytes_total` | counter | bytes destination → source (the response direction) |
//! | `istio_tcp_received_bytes_total` | counter | bytes source → destination (the request direction) |
//!
//! Outbound connections are reported with `reporter="source"`, inbound HBONE
//! with `reporter="destination"`; same-node local delivery, where this agent
//! is both ends, is reported twice, once per reporter.
//!
//! Bytes grow while a connection is open: the copies (the outbound relay.rs
//! for passthrough and same-node delivery, mesh-hbone's [`mesh_hbone::Counted`]
//! for outbound HBONE and for the inbound tunnels mesh-hbone's server
//! relays) add each chunk they move to the connection's [`LiveBytes`] (one
//! relaxed atomic add per chunk, no lock), and a scrape
//! first folds what open connections moved since the last scrape into the
//! counters ([`TcpMetrics::flush_open`]), under the lock of the open
//! connections' table (taken once per scrape and once per open and close).
//! The close adds only what no scrape added yet, so every byte is counted
//! once. Bytes added while open carry the `response_flags` an open
//! connection has (`-`).
//!
//! Agent health (see [`health`]), read when scraped:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mesh_agent_xds_connected` | gauge 0/1 | |
//! | `mesh_agent_xds_last_update_timestamp_seconds` | gauge (unix s, 0 = never) | |
//! | `mesh_agent_certificate_expiry_timestamp_seconds` | gauge (unix s) | `identity` |
//! | `mesh_agent_certificates_issued_total` | counter | |
//! | `mesh_agent_certificates_refused_total` | counter | a CA answer for another identity (discarded) |
//! | `mesh_agent_bpf_map_entries` | gauge | `map` (every pinned hash map) |
//! | `mesh_agent_capture_events_total` | counter | `counter` (every `capture_stats` index) |
//! | `mesh_agent_active_connections` | gauge | |
//! | `mesh_agent_dns_requests_total` | counter | `outcome`: `answered`, `forwarded`, `refused`, `failed` (see [`dns`]) |
//!
//! `--metrics=false` records nothing and serves nothing (benchmarks compare
//! with and without).
pub mod dns;
pub mod health;
pub mod labels;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use labels::TcpLabels;

pub use mesh_hbone::LiveBytes;

/// An open connection whose bytes a scrape folds in.
#[derive(Debug)]
struct Tracked {
    bytes: Arc<LiveBytes>,
    /// `(request, response)` already added to the counters.
    added: (u64, u64),
    /// One label set per reporter, as the connection is open.
    labels: Vec<TcpLabels>,
}

/// Istio's four TCP counters. Cloning shares the counters.
#[derive(Debug, Clone, Default)]
pub struct TcpMetrics {
    opened: Family<TcpLabels, Counter>,
    closed: Family<TcpLabels, Counter>,
    sent: Family<TcpLabels, Counter>,
    received: Family<TcpLabels, Counter>,
    /// Open connections by id.
    open: Arc<Mutex<HashMap<u64, Tracked>>>,
}

impl TcpMetrics {
    /// Counts connection `id` opened, once per label set (reporter), and
    /// tracks its `bytes` until [`TcpMetrics::closed`].
    pub fn opened(&self, id: u64, labels: Vec<TcpLabels>, bytes: Arc<LiveBytes>) {
        for l in &labels {
            self.opened.get_or_create(l).inc();
        }
        let tracked = Tracked {
            bytes,
            added: (0, 0),
            labels,
        };
        self.lock_open().insert(id, tracked);
    }

    fn lock_open(&self) -> MutexGuard<'_, HashMap<u64, Tracked>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `request` bytes went source → destination, `response` back.
    fn add_bytes(&self, labels: &TcpLabels, request: u64, response: u64) {
        if response > 0 {
            self.sent.get_or_create(labels).inc_by(response);
        }
        if request > 0 {
            self.received.get_or_create(labels).inc_by(request);
        }
    }

    /// Connection `id` ended having moved `request_bytes` source →
    /// destination and `response_bytes` back in total: counts it closed
    /// per label set and adds the bytes no scrape added yet.
    pub fn closed(&self, id: u64, labels: &[TcpLabels], request_bytes: u64, response_bytes: u64) {
        let added = self.lock_open().remove(&id).map_or((0, 0), |t| t.added);
        let request = request_bytes.saturating_sub(added.0);
        let response = response_bytes.saturating_sub(added.1);
        for l in labels {
            self.closed.get_or_create(l).inc();
            // Istio: "sent" is what the destination sent back (response),
            // "received" what it received (request). The series exist once
            // closed, even at zero bytes.
            self.sent.get_or_create(l).inc_by(response);
            self.received.get_or_create(l).inc_by(request);
        }
    }

    /// Adds what open connections moved since the last call (run before
    /// each scrape).
    pub fn flush_open(&self) {
        let mut open = self.lock_open();
        for tracked in open.values_mut() {
            let (request, response) = tracked.bytes.load();
            let (done_req, done_resp) = tracked.added;
            if (request, response) == (done_req, done_resp) {
                continue;
            }
            for l in &tracked.labels {
                self.add_bytes(
                    l,
                    request.saturating_sub(done_req),
                    response.saturating_sub(done_resp),
                );
            }
            tracked.added = (request.max(done_req), response.max(done_resp));
        }
    }
}

/// The registry served on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tcp: TcpMetrics,
}

impl Metrics {
    /// Serves `tcp` (shared with the connection stats that record into
    /// it); `health` adds the agent's own gauges and counters (absent in
    /// tests that only look at the TCP metrics).
    pub fn new(tcp: TcpMetrics, health: Option<health::Health>) -> Self {
        let mut registry = Registry::default();
        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "istio_tcp_connections_opened",
            "Total TCP connections opened",
            tcp.opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "Total TCP connections closed",
            tcp.closed.clone(),
        );
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent by the destination so far (response)",
            tcp.sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received by the destination so far (request)",
            tcp.received.clone(),
        );
        if let Some(health) = health {
            registry.register_collector(Box::new(health));
        }
        Self { registry, tcp }
    }

    /// Also serves the DNS proxy's counter.
    pub fn with_dns(mut self, dns: &dns::DnsMetrics) -> Self {
        self.registry.register(
            "mesh_agent_dns_requests",
            "DNS queries served to pods, by outcome",
            dns.requests.clone(),
        );
        self
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.tcp.flush_open();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use labels::{ConnLabels, Reporter};

    /// One `name{labels} value` line of an exposition.
    pub(crate) type Sample = (String, Vec<(String, String)>, f64);

    /// The sample lines of an exposition.
    pub(crate) fn samples(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (name, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let labels = labels
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap();
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels, value.parse().unwrap())
            })
            .collect()
    }

    pub(crate) fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        samples(text)
            .into_iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .reduce(|a, b| a + b)
    }

    #[test]
    fn dns_requests_are_counted_by_outcome() {
        let dns = dns::DnsMetrics::default();
        let metrics = Metrics::new(TcpMetrics::default(), None).with_dns(&dns);
        dns.count(dns::Outcome::Answered);
        dns.count(dns::Outcome::Answered);
        dns.count(dns::Outcome::Refused);
        let text = metrics.encode().unwrap();
        let name = "mesh_agent_dns_requests_total";
        assert_eq!(value(&text, name, &[("outcome", "answered")]), Some(2.0));
        assert_eq!(value(&text, name, &[("outcome", "refused")]), Some(1.0));
        assert_eq!(value(&text, name, &[("outcome", "forwarded")]), None);
    }

    #[test]
    fn exposition_has_istio_names_and_every_label() {
        let tcp = TcpMetrics::default();
        let metrics = Metrics::new(tcp.clone(), None);
        let mut conn = ConnLabels::unknown();
        conn.source.workload = "productpage-v1".into();
        conn.mutual_tls = true;
        let labels = TcpLabels::new(&conn, Reporter::Source, "-");
        tcp.opened(1, vec![labels.clone()], Default::default());
        tcp.closed(1, &[labels], 100, 2500);
        let text = metrics.encode().unwrap();
        let names: Vec<String> = samples(&text).into_iter().map(|s| s.0).collect();
        for name in [
            "istio_tcp_connections_opened_total",
            "istio_tcp_connections_closed_total",
            "istio_tcp_sent_bytes_total",
            "istio_tcp_received_bytes_total",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} missing:\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
        let (_, labels, _) = samples(&text)
            .into_iter()
            .find(|s| s.0 == "istio_tcp_sent_bytes_total")
            .unwrap();
        let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "reporter",
                "source_workload",
                "source_canonical_service",
                "source_canonical_revision",
                "source_workload_namespace",
                "source_principal",
                "source_app",
                "source_version",
                "source_cluster",
                "destination_service",
                "destination_service_namespace",
                "destination_service_name",
                "destination_workload",
                "destination_workload_namespace",
                "destination_principal",
                "destination_app",
                "destination_version",
                "destination_canonical_service",
                "destination_canonical_revision",
                "destination_cluster",
                "request_protocol",
                "response_flags",
                "connection_security_policy",
            ]
        );
        let who = [
            ("reporter", "source"),
            ("source_workload", "productpage-v1"),
            ("connection_security_policy", "mutual_tls"),
            ("destination_service", "unknown"),
        ];
        assert_eq!(
            value(&text, "istio_tcp_sent_bytes_total", &who),
            Some(2500.0)
        );
        assert_eq!(
            value(&text, "istio_tcp_received_bytes_total", &who),
            Some(100.0)
        );
        assert_eq!(
            value(&text, "istio_tcp_connections_closed_total", &who),
            Some(1.0)
        );
    }

    #[test]
    fn bytes_of_open_connections_grow_at_scrape_and_count_once() {
        let tcp = TcpMetrics::default();
        let metrics = Metrics::new(tcp.clone(), None);
        let mut conn = ConnLabels::unknown();
        conn.source.workload = "web".into();
        let open = TcpLabels::new(&conn, Reporter::Source, "-");
        let dst = TcpLabels::new(&conn, Reporter::Destination, "-");
        let live = std::sync::Arc::new(LiveBytes::default());
        tcp.opened(7, vec![open.clone(), dst.clone()], live.clone());
        let sent = "istio_tcp_sent_bytes_total";
        let received = "istio_tcp_received_bytes_total";
        let src = [("reporter", "source")];
        // Nothing moved yet: no bytes.
        let text = metrics.encode().unwrap();
        assert_eq!(value(&text, received, &src), None, "{text}");
        live.request.fetch_add(300, Ordering::Relaxed);
        live.response.fetch_add(40, Ordering::Relaxed);
        let text = metrics.encode().unwrap();
        assert_eq!(value(&text, received, &src), Some(300.0), "{text}");
        assert_eq!(value(&text, sent, &src), Some(40.0), "{text}");
        let d = [("reporter", "destination")];
        assert_eq!(value(&text, received, &d), Some(300.0), "{text}");
        // A scrape without traffic adds nothing; more traffic adds the delta.
        let text = metrics.encode().unwrap();
        assert_eq!(value(&text, received, &src), Some(300.0), "{text}");
        live.request.fetch_add(5, Ordering::Relaxed);
        let text = metrics.encode().unwrap();
        assert_eq!(value(&text, received, &src), Some(305.0), "{text}");
        // The close adds only what no scrape added; the connection is no
        // longer folded in afterwards.
        tcp.closed(7, &[open, dst], 1000, 45);
        let text = metrics.encode().unwrap();
        assert_eq!(value(&text, received, &src), Some(1000.0), "{text}");
        assert_eq!(value(&text, sent, &src), Some(45.0), "{text}");
        assert_eq!(value(&text, received, &d), Some(1000.0), "{text}");
        live.request.fetch_add(5, Ordering::Relaxed);
        let text = metrics.encode().unwrap();
        assert_eq!(value(&text, received, &src), Some(1000.0), "{text}");
    }
}
