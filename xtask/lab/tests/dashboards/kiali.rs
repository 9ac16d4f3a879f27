//! The queries Kiali's traffic graph runs, in its shape (a rate over the
//! graph's duration summed by both ends' cluster, namespace, workload,
//! canonical service and revision, the destination service, protocol,
//! response code and flags, keeping `> 0`), find the demo's edges: HTTP as
//! the waypoint reports it, ingress as the gateway reports it, TCP as the
//! node agents report it.
use std::time::{Duration, Instant};

use mesh_e2e::prometheus::Prometheus;
use mesh_lab::demo_prometheus::label;
use serde_json::Value;

/// Kiali's group-by for request and TCP edges.
const GROUP_BY: &str = "source_cluster, source_workload_namespace, source_workload, \
    source_canonical_service, source_canonical_revision, destination_cluster, \
    destination_service_namespace, destination_service, destination_service_name, \
    destination_workload_namespace, destination_workload, destination_canonical_service, \
    destination_canonical_revision, request_protocol, response_code, grpc_response_status, \
    response_flags";

/// One Kiali graph query and the edges it must show, each as the labels a
/// series must carry.
struct GraphQuery {
    what: &'static str,
    metric: &'static str,
    reporter: &'static str,
    edges: Vec<Vec<(&'static str, &'static str)>>,
}

impl GraphQuery {
    fn promql(&self) -> String {
        format!(
            "sum(rate({}{{reporter=\"{}\"}}[1m])) by ({GROUP_BY}) > 0",
            self.metric, self.reporter
        )
    }
}

/// An HTTP edge between canonical services in namespace `default`.
fn http_edge(
    source: &'static str,
    service: &'static str,
    revision: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("source_canonical_service", source),
        ("source_workload_namespace", "default"),
        ("source_cluster", "Kubernetes"),
        ("destination_service_name", service),
        ("destination_service_namespace", "default"),
        ("destination_canonical_service", service),
        ("destination_canonical_revision", revision),
        ("destination_workload_namespace", "default"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "http"),
        ("response_code", "200"),
    ]
}

/// A TCP edge from a canonical service to a service, as the source's node
/// agent reports it.
fn tcp_edge(source: &'static str, service: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("source_canonical_service", source),
        ("source_workload_namespace", "default"),
        ("destination_service_name", service),
        ("destination_service_namespace", "default"),
        ("request_protocol", "tcp"),
    ]
}

/// A TCP edge into a workload, as its node agent reports it: the source is
/// the waypoint that connected (every demo service uses it), named by its
/// own pod.
fn inbound_tcp_edge(
    workload: &'static str,
    service: &'static str,
    revision: &'static str,
) -> Vec<(&'static str, &'static str)> {
    vec![
        ("source_workload", "waypoint"),
        ("source_workload_namespace", "default"),
        ("destination_workload", workload),
        ("destination_workload_namespace", "default"),
        ("destination_service_name", service),
        ("destination_canonical_service", service),
        ("destination_canonical_revision", revision),
        ("request_protocol", "tcp"),
    ]
}

fn queries() -> Vec<GraphQuery> {
    vec![
        GraphQuery {
            what: "HTTP edges through the waypoint",
            metric: "istio_requests_total",
            reporter: "waypoint",
            edges: vec![
                http_edge("sleep", "productpage", "v1"),
                http_edge("productpage", "reviews", "v1"),
                http_edge("productpage", "reviews", "v2"),
                http_edge("productpage", "reviews", "v3"),
                http_edge("productpage", "details", "v1"),
                http_edge("reviews", "ratings", "v1"),
            ],
        },
        GraphQuery {
            what: "ingress edge from the gateway",
            metric: "istio_requests_total",
            reporter: "source",
            edges: vec![vec![
                ("source_canonical_service", "istio-ingressgateway"),
                ("destination_service_name", "productpage"),
                ("destination_service_namespace", "default"),
                ("destination_canonical_service", "productpage"),
                ("destination_canonical_revision", "v1"),
                ("destination_workload", "productpage-v1"),
                ("destination_workload_namespace", "default"),
                ("response_code", "200"),
            ]],
        },
        GraphQuery {
            what: "TCP edges (bytes sent) from the node agents",
            metric: "istio_tcp_sent_bytes_total",
            reporter: "source",
            edges: vec![
                tcp_edge("sleep", "productpage"),
                tcp_edge("productpage", "reviews"),
                tcp_edge("productpage", "details"),
                tcp_edge("reviews", "ratings"),
            ],
        },
        GraphQuery {
            what: "TCP edges (bytes received) from the node agents",
            metric: "istio_tcp_received_bytes_total",
            reporter: "source",
            edges: vec![
                tcp_edge("sleep", "productpage"),
                tcp_edge("productpage", "reviews"),
                tcp_edge("productpage", "details"),
                tcp_edge("reviews", "ratings"),
            ],
        },
        GraphQuery {
            what: "TCP edges (bytes received) at the destination agents",
            metric: "istio_tcp_received_bytes_total",
            reporter: "destination",
            edges: vec![
                inbound_tcp_edge("productpage-v1", "productpage", "v1"),
                inbound_tcp_edge("reviews-v1", "reviews", "v1"),
                inbound_tcp_edge("reviews-v2", "reviews", "v2"),
                inbound_tcp_edge("reviews-v3", "reviews", "v3"),
                inbound_tcp_edge("details-v1", "details", "v1"),
                inbound_tcp_edge("ratings-v1", "ratings", "v1"),
            ],
        },
    ]
}

fn has_edge(series: &[Value], edge: &[(&str, &str)]) -> bool {
    series
        .iter()
        .any(|s| edge.iter().all(|(name, value)| label(s, name) == *value))
}

/// The edges (with their query) that Prometheus does not show, each query
/// polled for at most `timeout`; each names the labels it looked for.
pub fn missing_edges(prometheus: &Prometheus, timeout: Duration) -> Vec<String> {
    let mut missing = vec![];
    for q in queries() {
        let deadline = Instant::now() + timeout;
        let promql = q.promql();
        let mut last: Vec<Value> = vec![];
        loop {
            last = prometheus.query(&promql).unwrap_or(last);
            let absent: Vec<_> = q.edges.iter().filter(|e| !has_edge(&last, e)).collect();
            if absent.is_empty() {
                println!(
                    "kiali: {} ({} series): all {} edges",
                    q.what,
                    last.len(),
                    q.edges.len()
                );
                break;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = last.iter().map(|s| s["metric"].to_string()).collect();
                for e in absent {
                    missing.push(format!(
                        "kiali: {}: no edge {e:?}\n    query: {promql}\n    series: {}",
                        q.what,
                        seen.join("\n            ")
                    ));
                }
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    missing
}
