//! From rate samples and the control plane's model to the graph of
//! docs/contracts/graph-data.md: nodes (workloads, services, waypoints,
//! gateways, external hosts, unknown sources) and edges with rates,
//! errors, latency, bytes, mTLS and the canary split.
//!
//! Each sample is placed on its path `source → [waypoint] → service →
//! destination workload`, and every hop of the path gets the sample. One
//! reporter per hop, so nothing is counted twice: a waypoint's series win
//! over the client's for the same (client, service); destination-reported
//! series are used only for services no client or waypoint reports; TCP
//! series only for (client, service) pairs without HTTP series.
use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;

use super::{
    quantile::histogram_quantile,
    series::{Metric, RateSample, Reporter, SeriesKey},
    weights,
};
use crate::model::{waypoint::GATEWAY_NAME_LABEL, MeshState, Service, Workload};

const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Workload,
    Service,
    Waypoint,
    Gateway,
    External,
    Unknown,
}

impl NodeKind {
    fn as_str(self) -> &'static str {
        match self {
            NodeKind::Workload => "workload",
            NodeKind::Service => "service",
            NodeKind::Waypoint => "waypoint",
            NodeKind::Gateway => "gateway",
            NodeKind::External => "external",
            NodeKind::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    pub namespace: String,
    pub name: String,
    pub app: Option<String>,
    pub version: Option<String>,
}

impl Node {
    fn new(kind: NodeKind, namespace: &str, name: &str) -> Node {
        Node {
            id: format!("{}:{namespace}/{name}", kind.as_str()),
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            app: None,
            version: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Grpc,
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub id: String,
    pub source: String,
    pub target: String,
    pub protocol: Protocol,
    pub request_rate: Option<f64>,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub bytes_rate: Option<f64>,
    pub mtls: bool,
    pub configured_weight: Option<u32>,
    pub observed_share: Option<f64>,
}

/// Nodes and edges, sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Graph {
    pub namespaces: Vec<String>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// What is summed per edge.
#[derive(Debug, Default)]
struct Acc {
    requests: f64,
    errors: f64,
    grpc_only: bool,
    seen_requests: bool,
    /// `le` bits → rate.
    buckets: BTreeMap<u64, f64>,
    bytes: f64,
    tcp: bool,
    mtls: bool,
}

/// The model lookups a path needs.
struct Model<'a> {
    state: &'a MeshState,
}

impl<'a> Model<'a> {
    /// The pod a metric's workload name stands for: the pod of that name,
    /// else a pod whose name is the workload's plus a suffix (the
    /// workload is named by its owner).
    fn workload(&self, name: &str, namespace: &str) -> Option<&'a Workload> {
        let pods = || {
            self.state
                .workloads
                .values()
                .filter(|w| w.namespace == namespace)
        };
        pods().find(|w| w.name == name).or_else(|| {
            pods().find(|w| {
                w.name
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('-'))
            })
        })
    }

    fn workload_node(&self, name: &str, namespace: &str, version: &str) -> Node {
        if name.is_empty() || name == UNKNOWN {
            let ns = if namespace.is_empty() {
                UNKNOWN
            } else {
                namespace
            };
            return Node::new(NodeKind::Unknown, ns, UNKNOWN);
        }
        let Some(w) = self.workload(name, namespace) else {
            let mut node = Node::new(NodeKind::Workload, namespace, name);
            node.version = known(version);
            return node;
        };
        let waypoint = self
            .state
            .waypoints
            .values()
            .find(|wp| wp.pods.contains(&w.uid));
        if let Some(wp) = waypoint {
            return Node::new(NodeKind::Waypoint, &wp.namespace, &wp.name);
        }
        let gateway = self
            .state
            .ingress_gateways
            .iter()
            .any(|g| g.selects_workload(w))
            || w.labels.contains_key(GATEWAY_NAME_LABEL);
        let kind = if gateway {
            NodeKind::Gateway
        } else {
            NodeKind::Workload
        };
        let mut node = Node::new(kind, namespace, name);
        node.app = w
            .labels
            .get("app")
            .or_else(|| w.labels.get("app.kubernetes.io/name"))
            .cloned();
        node.version = w
            .labels
            .get("version")
            .or_else(|| w.labels.get("app.kubernetes.io/version"))
            .cloned()
            .or_else(|| known(version));
        node
    }

    /// The service a series names, else (name `*` or unknown: a gateway
    /// routing to a workload) the first service selecting the workload.
    fn service(&self, k: &SeriesKey) -> Option<&'a Service> {
        let by_name = self.state.services.values().find(|s| {
            (s.name == k.destination_service_name && s.namespace == k.destination_service_namespace)
                || (!k.destination_service.is_empty() && s.hostname == k.destination_service)
        });
        by_name.or_else(|| {
            let w = self.workload(&k.destination_workload, &k.destination_workload_namespace)?;
            w.services
                .keys()
                .find_map(|key| self.state.services.get(key))
        })
    }

    fn service_node(&self, k: &SeriesKey) -> Option<(Node, Option<&'a Service>)> {
        if let Some(s) = self.service(k) {
            let kind = if s.external.is_some() {
                NodeKind::External
            } else {
                NodeKind::Service
            };
            let mut node = Node::new(kind, &s.namespace, &s.name);
            node.app = s.labels.get("app").cloned();
            return Some((node, Some(s)));
        }
        let name = k.destination_service_name.as_str();
        if name.is_empty() || name == UNKNOWN || name == "*" {
            return None;
        }
        // Not in the model: a cluster service elsewhere, or a host
        // outside the mesh.
        let in_cluster = k.destination_service.contains(".svc.");
        let kind = if in_cluster {
            NodeKind::Service
        } else {
            NodeKind::External
        };
        Some((
            Node::new(kind, &k.destination_service_namespace, name),
            None,
        ))
    }

    fn waypoint_node(&self, service: Option<&Service>) -> Option<Node> {
        let wp = self.state.service_waypoint(service?)?;
        Some(Node::new(NodeKind::Waypoint, &wp.namespace, &wp.name))
    }
}

fn known(v: &str) -> Option<String> {
    (!v.is_empty() && v != UNKNOWN).then(|| v.to_string())
}

/// One sample's path through the graph.
struct Path {
    nodes: Vec<Node>,
    /// Node id of the service hop, if any.
    service: Option<String>,
}

fn path(m: &Model, k: &SeriesKey) -> Path {
    let src = m.workload_node(&k.source_workload, &k.source_workload_namespace, "");
    let svc = m.service_node(k);
    let dst = (known(&k.destination_workload).is_some()).then(|| {
        m.workload_node(
            &k.destination_workload,
            &k.destination_workload_namespace,
            &k.destination_version,
        )
    });
    // A gateway routes on its own; everything else reaches a service
    // that uses a waypoint through it.
    let via_waypoint = k.reporter == Some(Reporter::Waypoint)
        || (src.kind != NodeKind::Gateway && src.kind != NodeKind::Waypoint);
    let waypoint = via_waypoint
        .then(|| m.waypoint_node(svc.as_ref().and_then(|(_, s)| *s)))
        .flatten();
    let service = svc.as_ref().map(|(n, _)| n.id.clone());
    let mut nodes = vec![src];
    nodes.extend(waypoint);
    nodes.extend(svc.map(|(n, _)| n));
    nodes.extend(dst);
    nodes.dedup_by(|a, b| a.id == b.id);
    Path { nodes, service }
}

/// Builds the graph from `samples`, keeping edges that touch `namespace`
/// (all when `None`).
pub fn build(samples: &[RateSample], state: &MeshState, namespace: Option<&str>) -> Graph {
    let m = Model { state };
    // Which reporters to trust, per (client, service) and per service.
    let mut waypoint_pairs = HashSet::new();
    let mut client_services = HashSet::new();
    let mut tcp_client_services = HashSet::new();
    for s in samples {
        let k = &s.key;
        let svc = (
            k.destination_service_name.clone(),
            k.destination_service_namespace.clone(),
        );
        match (s.metric.is_request(), k.reporter) {
            (true, Some(Reporter::Waypoint)) => {
                waypoint_pairs.insert((
                    k.source_workload.clone(),
                    k.source_workload_namespace.clone(),
                    svc.clone(),
                ));
                client_services.insert(svc);
            }
            (true, Some(Reporter::Source)) => {
                client_services.insert(svc);
            }
            (false, Some(Reporter::Source | Reporter::Waypoint)) => {
                tcp_client_services.insert(svc);
            }
            _ => {}
        }
    }
    let use_sample = |s: &RateSample| {
        let k = &s.key;
        let svc = (
            k.destination_service_name.clone(),
            k.destination_service_namespace.clone(),
        );
        match k.reporter {
            Some(Reporter::Waypoint) => true,
            Some(Reporter::Source) => {
                !(s.metric.is_request()
                    && waypoint_pairs.contains(&(
                        k.source_workload.clone(),
                        k.source_workload_namespace.clone(),
                        svc,
                    )))
            }
            Some(Reporter::Destination) if s.metric.is_request() => !client_services.contains(&svc),
            Some(Reporter::Destination) => {
                !client_services.contains(&svc) && !tcp_client_services.contains(&svc)
            }
            None => false,
        }
    };

    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut edges: BTreeMap<(String, String), Acc> = BTreeMap::new();
    let mut http_pairs: HashSet<(String, String)> = HashSet::new();
    let mut gateways_in: BTreeMap<String, Vec<&RateSample>> = BTreeMap::new();
    // HTTP first, so TCP knows which pairs HTTP already covers.
    let (requests, tcp): (Vec<&RateSample>, Vec<&RateSample>) = samples
        .iter()
        .filter(|s| use_sample(s))
        .partition(|s| s.metric.is_request());
    for s in requests {
        let p = path(&m, &s.key);
        if p.nodes.len() < 2 {
            continue;
        }
        let first = &p.nodes[0];
        if let Some(svc) = &p.service {
            http_pairs.insert((first.id.clone(), svc.clone()));
        }
        http_pairs.insert((first.id.clone(), p.nodes[1].id.clone()));
        if first.kind == NodeKind::Gateway && s.key.reporter == Some(Reporter::Source) {
            gateways_in.entry(first.id.clone()).or_default().push(s);
        }
        add_path(&mut nodes, &mut edges, &p.nodes, s);
    }
    // Clients outside the mesh are not reported by anyone; what a gateway
    // sends on is what it received.
    for (gateway, samples) in gateways_in {
        let outside = Node::new(NodeKind::Unknown, UNKNOWN, UNKNOWN);
        let gw = nodes[&gateway].clone();
        for s in samples {
            let mut s = s.clone();
            s.key.connection_security_policy = String::new();
            add_path(&mut nodes, &mut edges, &[outside.clone(), gw.clone()], &s);
        }
    }
    for s in tcp {
        let p = path(&m, &s.key);
        if p.nodes.len() < 2 {
            continue;
        }
        let covered = http_pairs.contains(&(p.nodes[0].id.clone(), p.nodes[1].id.clone()))
            || p.service
                .as_ref()
                .is_some_and(|svc| http_pairs.contains(&(p.nodes[0].id.clone(), svc.clone())));
        if !covered {
            add_path(&mut nodes, &mut edges, &p.nodes, s);
        }
    }
    finish(&m, nodes, edges, namespace)
}

fn add_path(
    nodes: &mut BTreeMap<String, Node>,
    edges: &mut BTreeMap<(String, String), Acc>,
    path: &[Node],
    s: &RateSample,
) {
    for n in path {
        nodes.entry(n.id.clone()).or_insert_with(|| n.clone());
    }
    for hop in path.windows(2) {
        let acc = edges
            .entry((hop[0].id.clone(), hop[1].id.clone()))
            .or_insert_with(|| Acc {
                grpc_only: true,
                ..Acc::default()
            });
        acc.mtls |= s.key.connection_security_policy == "mutual_tls";
        match s.metric {
            Metric::Requests => {
                acc.seen_requests = true;
                acc.requests += s.rate;
                if s.key.is_error() {
                    acc.errors += s.rate;
                }
                acc.grpc_only &= s.key.request_protocol == "grpc";
            }
            Metric::DurationBucket => {
                if let Some(le) = s.le {
                    *acc.buckets.entry(le.to_bits()).or_default() += s.rate;
                }
            }
            Metric::TcpSent | Metric::TcpReceived => {
                acc.tcp = true;
                acc.bytes += s.rate;
            }
            Metric::TcpOpened => acc.tcp = true,
        }
    }
}

fn finish(
    m: &Model,
    nodes: BTreeMap<String, Node>,
    edges: BTreeMap<(String, String), Acc>,
    namespace: Option<&str>,
) -> Graph {
    let mut out: Vec<Edge> = edges
        .into_iter()
        .filter(|(_, a)| a.seen_requests || a.tcp)
        .map(|((source, target), a)| {
            let buckets: Vec<(f64, f64)> = a
                .buckets
                .iter()
                .map(|(le, r)| (f64::from_bits(*le), *r))
                .collect();
            let http = a.seen_requests;
            Edge {
                id: format!("{source}->{target}"),
                protocol: match (http, a.grpc_only) {
                    (false, _) => Protocol::Tcp,
                    (true, true) => Protocol::Grpc,
                    (true, false) => Protocol::Http,
                },
                request_rate: http.then_some(a.requests),
                error_rate: http.then(|| {
                    if a.requests > 0.0 {
                        a.errors / a.requests
                    } else {
                        0.0
                    }
                }),
                p50_ms: if http {
                    histogram_quantile(0.5, &buckets)
                } else {
                    None
                },
                p99_ms: if http {
                    histogram_quantile(0.99, &buckets)
                } else {
                    None
                },
                bytes_rate: a.tcp.then_some(a.bytes),
                mtls: a.mtls,
                configured_weight: None,
                observed_share: None,
                source,
                target,
            }
        })
        .collect();
    canary(m, &nodes, &mut out);
    let mut namespaces: BTreeSet<String> = nodes.values().map(|n| n.namespace.clone()).collect();
    namespaces.extend(m.state.workloads.values().map(|w| w.namespace.clone()));
    namespaces.extend(m.state.services.values().map(|s| s.namespace.clone()));
    namespaces.remove(UNKNOWN);
    namespaces.remove("");
    if let Some(ns) = namespace {
        let in_ns = |id: &str| nodes.get(id).is_some_and(|n| n.namespace == ns);
        out.retain(|e| in_ns(&e.source) || in_ns(&e.target));
    }
    let used: BTreeSet<&str> = out
        .iter()
        .flat_map(|e| [e.source.as_str(), e.target.as_str()])
        .collect();
    Graph {
        namespaces: namespaces.into_iter().collect(),
        nodes: nodes
            .values()
            .filter(|n| used.contains(n.id.as_str()))
            .cloned()
            .collect(),
        edges: out,
    }
}

/// Sets `configured_weight` and `observed_share` on service → workload
/// edges. When the service's default route splits by weight, the share
/// is among the workloads of that split (traffic a match route sends
/// elsewhere does not dilute it); otherwise among all its workloads.
fn canary(m: &Model, nodes: &BTreeMap<String, Node>, edges: &mut [Edge]) {
    let is_service = |id: &str| {
        nodes
            .get(id)
            .is_some_and(|n| matches!(n.kind, NodeKind::Service | NodeKind::External))
    };
    for e in edges.iter_mut() {
        let (Some(svc), Some(dst)) = (nodes.get(&e.source), nodes.get(&e.target)) else {
            continue;
        };
        if !is_service(&e.source) || dst.kind == NodeKind::Unknown || e.request_rate.is_none() {
            continue;
        }
        let service = m
            .state
            .services
            .values()
            .find(|s| s.name == svc.name && s.namespace == svc.namespace);
        let workload = m.workload(&dst.name, &dst.namespace);
        if let (Some(s), Some(w)) = (service, workload) {
            e.configured_weight = weights::configured_weight(m.state, s, w);
        }
    }
    let mut totals: BTreeMap<(String, bool), f64> = BTreeMap::new();
    let weighted: BTreeSet<String> = edges
        .iter()
        .filter(|e| e.configured_weight.is_some())
        .map(|e| e.source.clone())
        .collect();
    for e in edges.iter() {
        if is_service(&e.source) {
            if let Some(rate) = e.request_rate {
                *totals
                    .entry((e.source.clone(), e.configured_weight.is_some()))
                    .or_default() += rate;
            }
        }
    }
    for e in edges.iter_mut() {
        if !is_service(&e.source) {
            continue;
        }
        let Some(rate) = e.request_rate else { continue };
        let split = weighted.contains(&e.source);
        if split && e.configured_weight.is_none() {
            continue;
        }
        let total = if split {
            totals
                .get(&(e.source.clone(), true))
                .copied()
                .unwrap_or(0.0)
        } else {
            totals
                .get(&(e.source.clone(), false))
                .copied()
                .unwrap_or(0.0)
        };
        if total > 0.0 {
            e.observed_share = Some(rate / total);
        }
    }
}

#[cfg(test)]
mod tests;
