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
//! is both ends, is reported twice, once per reporter. Bytes are added when a
//! connection closes, not while it runs: the relays count in locals and hand
//! totals back at the end, and sharing live counters with the exporter would
//! put atomics on the per-read hot path for a benefit only very long
//! connections see.
//!
//! Agent health (see [`health`]), read when scraped:
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mesh_agent_xds_connected` | gauge 0/1 | |
//! | `mesh_agent_xds_last_update_timestamp_seconds` | gauge (unix s, 0 = never) | |
//! | `mesh_agent_certificate_expiry_timestamp_seconds` | gauge (unix s) | `identity` |
//! | `mesh_agent_certificates_issued_total` | counter | |
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

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use labels::TcpLabels;

/// Istio's four TCP counters. Cloning shares the counters.
#[derive(Debug, Clone, Default)]
pub struct TcpMetrics {
    opened: Family<TcpLabels, Counter>,
    closed: Family<TcpLabels, Counter>,
    sent: Family<TcpLabels, Counter>,
    received: Family<TcpLabels, Counter>,
}

impl TcpMetrics {
    pub fn opened(&self, labels: &TcpLabels) {
        self.opened.get_or_create(labels).inc();
    }

    /// `request_bytes` went source → destination, `response_bytes` back.
    pub fn closed(&self, labels: &TcpLabels, request_bytes: u64, response_bytes: u64) {
        self.closed.get_or_create(labels).inc();
        // Istio: "sent" is what the destination sent back (response),
        // "received" what it received (request).
        self.sent.get_or_create(labels).inc_by(response_bytes);
        self.received.get_or_create(labels).inc_by(request_bytes);
    }
}

/// The registry served on `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
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
            "Bytes sent by the destination during the connection (response)",
            tcp.sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received by the destination during the connection (request)",
            tcp.received.clone(),
        );
        if let Some(health) = health {
            registry.register_collector(Box::new(health));
        }
        Self { registry }
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
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
pub(crate) mod tests {
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
        tcp.opened(&labels);
        tcp.closed(&labels, 100, 2500);
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
                "source_workload_namespace",
                "source_principal",
                "source_app",
                "source_version",
                "destination_workload",
                "destination_workload_namespace",
                "destination_principal",
                "destination_service",
                "destination_service_name",
                "destination_service_namespace",
                "destination_app",
                "destination_version",
                "connection_security_policy",
                "response_flags",
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
}
