//! The bookinfo demo's topology and series, as the demo's proxies export
//! them (testdata/bookinfo.prom), placed on the graph.
use super::*;
use crate::{
    graph::{exposition, series::parse_le},
    source::{self, SourceConfig},
};

const METRICS: &str = include_str!("../testdata/bookinfo.prom");

fn pod(name: &str, app: &str, version: &str, ip: &str, extra_labels: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{app: {app}, version: {version}{extra_labels}}}\nspec:\n  serviceAccountName: {name}\n  nodeName: node-1\nstatus:\n  podIP: {ip}\n"
    )
}

fn service(name: &str, ip: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  clusterIP: {ip}\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 9080}}]\n"
    )
}

/// The demo's mesh: an ambient namespace using waypoint `waypoint`, the
/// bookinfo pods and services, the reviews canary, an ingress gateway.
fn demo_state() -> MeshState {
    let mut yaml = String::from(
        "apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: waypoint}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
",
    );
    for (name, app, version, ip) in [
        ("productpage-v1", "productpage", "v1", "10.244.1.2"),
        ("details-v1", "details", "v1", "10.244.1.3"),
        ("sleep", "sleep", "v1", "10.244.1.4"),
        ("reviews-v1", "reviews", "v1", "10.244.2.3"),
        ("reviews-v2", "reviews", "v2", "10.244.2.4"),
        ("reviews-v3", "reviews", "v3", "10.244.2.5"),
        ("ratings-v1", "ratings", "v1", "10.244.2.6"),
    ] {
        yaml.push_str(&pod(name, app, version, ip, ""));
    }
    yaml.push_str(&pod(
        "waypoint",
        "waypoint",
        "v1",
        "10.244.2.2",
        ", gateway.networking.k8s.io/gateway-name: waypoint",
    ));
    yaml.push_str(&pod(
        "istio-ingressgateway",
        "istio-ingressgateway",
        "latest",
        "10.244.1.5",
        ", istio: ingressgateway",
    ));
    for (name, ip) in [
        ("productpage", "10.96.1.10"),
        ("details", "10.96.1.11"),
        ("reviews", "10.96.1.12"),
        ("ratings", "10.96.1.13"),
    ] {
        yaml.push_str(&service(name, ip));
    }
    let files = [("mesh.yaml".to_string(), yaml)];
    source::load_files(&files, &SourceConfig::default())
        .expect("valid demo YAML")
        .state
}

/// The fixture's values, read as per-second rates.
fn samples(text: &str) -> Vec<RateSample> {
    exposition::parse(text, |n| Metric::from_series_name(n).is_some())
        .samples
        .into_iter()
        .map(|s| RateSample {
            metric: Metric::from_series_name(s.name).unwrap(),
            le: s
                .labels
                .iter()
                .find(|(n, _)| *n == "le")
                .and_then(|(_, v)| parse_le(v)),
            key: SeriesKey::from_labels(s.labels.iter().map(|(n, v)| (*n, v.as_str()))),
            rate: s.value,
        })
        .collect()
}

fn edge<'a>(g: &'a Graph, id: &str) -> &'a Edge {
    g.edges
        .iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("no edge {id}; edges: {:#?}", ids(g)))
}

fn ids(g: &Graph) -> Vec<&str> {
    g.edges.iter().map(|e| e.id.as_str()).collect()
}

#[test]
fn demo_topology() {
    let g = build(&samples(METRICS), &demo_state(), None);
    let kinds: BTreeMap<&str, NodeKind> = g.nodes.iter().map(|n| (n.id.as_str(), n.kind)).collect();
    assert_eq!(kinds["waypoint:default/waypoint"], NodeKind::Waypoint);
    assert_eq!(
        kinds["gateway:default/istio-ingressgateway"],
        NodeKind::Gateway
    );
    assert_eq!(kinds["service:default/reviews"], NodeKind::Service);
    assert_eq!(kinds["unknown:unknown/unknown"], NodeKind::Unknown);
    let v2 = g
        .nodes
        .iter()
        .find(|n| n.id == "workload:default/reviews-v2")
        .unwrap();
    assert_eq!(
        (v2.app.as_deref(), v2.version.as_deref()),
        (Some("reviews"), Some("v2"))
    );

    // Through the waypoint: client → waypoint → service → workloads.
    let pp = edge(
        &g,
        "workload:default/productpage-v1->waypoint:default/waypoint",
    );
    assert_eq!(pp.protocol, Protocol::Http);
    // reviews v1 392 + v2 88 + v3 480 (the waypoint's series), details
    // is not in the fixture's waypoint series by name: all that the
    // waypoint saw from productpage.
    assert!(pp.request_rate.unwrap() >= 960.0, "{pp:?}");
    assert!(pp.mtls);
    let wr = edge(&g, "waypoint:default/waypoint->service:default/reviews");
    assert_eq!(wr.request_rate, Some(960.0));
    assert_eq!(wr.error_rate, Some(0.0));

    // The canary: 80/20 configured, 392/88 seen among v1 and v2; v3 is
    // reached by a match route only.
    let v1 = edge(&g, "service:default/reviews->workload:default/reviews-v1");
    let v2 = edge(&g, "service:default/reviews->workload:default/reviews-v2");
    let v3 = edge(&g, "service:default/reviews->workload:default/reviews-v3");
    assert_eq!(v1.configured_weight, Some(80));
    assert_eq!(v2.configured_weight, Some(20));
    assert_eq!(v3.configured_weight, None);
    assert_eq!(v3.observed_share, None);
    assert!((v1.observed_share.unwrap() - 392.0 / 480.0).abs() < 1e-9);
    assert!((v2.observed_share.unwrap() - 88.0 / 480.0).abs() < 1e-9);
    let (p50, p99) = (v1.p50_ms.unwrap(), v1.p99_ms.unwrap());
    assert!(p50 > 0.0 && p50 <= p99, "{p50} {p99}");

    // The gateway goes straight to productpage (no waypoint hop), and
    // what it received came from outside the mesh.
    edge(
        &g,
        "gateway:default/istio-ingressgateway->service:default/productpage",
    );
    let outside = edge(
        &g,
        "unknown:unknown/unknown->gateway:default/istio-ingressgateway",
    );
    assert_eq!(outside.request_rate, Some(460.0));
    assert!(!outside.mtls);
    assert!(!ids(&g)
        .iter()
        .any(|id| id.starts_with("gateway:default/istio-ingressgateway->waypoint")));

    // TCP series of pairs HTTP covers add nothing; destination-reported
    // series of services clients report add nothing.
    assert!(
        g.edges.iter().all(|e| e.protocol != Protocol::Tcp),
        "{:#?}",
        ids(&g)
    );
    assert!(
        !ids(&g).iter().any(|id| id.starts_with("unknown:default")),
        "{:#?}",
        ids(&g)
    );
    assert_eq!(g.namespaces, vec!["default".to_string()]);
}

#[test]
fn tcp_only_pairs_become_tcp_edges() {
    let only_tcp: String = METRICS
        .lines()
        .filter(|l| l.starts_with("istio_tcp_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let g = build(&samples(&only_tcp), &demo_state(), None);
    let e = edge(&g, "workload:default/sleep->waypoint:default/waypoint");
    assert_eq!(e.protocol, Protocol::Tcp);
    assert!(e.bytes_rate.unwrap() > 0.0);
    assert_eq!(e.request_rate, None);
    assert!(e.mtls);
    edge(&g, "waypoint:default/waypoint->service:default/productpage");
    // The agents' destination-side series are not counted again.
    assert!(
        !ids(&g).iter().any(|id| id.contains("unknown")),
        "{:#?}",
        ids(&g)
    );
}

#[test]
fn namespace_filter_and_errors() {
    let mut s = samples(METRICS);
    // One reviews-v2 series turns into 503s.
    let failing = s
        .iter_mut()
        .find(|x| x.metric == Metric::Requests && x.key.destination_workload == "reviews-v2")
        .unwrap();
    failing.key.response_code = "503".into();
    let g = build(&s, &demo_state(), None);
    let v2 = edge(&g, "service:default/reviews->workload:default/reviews-v2");
    assert_eq!(v2.error_rate, Some(1.0));
    let wr = edge(&g, "waypoint:default/waypoint->service:default/reviews");
    assert!((wr.error_rate.unwrap() - 88.0 / 960.0).abs() < 1e-9);

    let none = build(&s, &demo_state(), Some("other"));
    assert!(none.edges.is_empty() && none.nodes.is_empty());
    assert_eq!(none.namespaces, vec!["default".to_string()]);
    let all = build(&s, &demo_state(), Some("default"));
    assert_eq!(all.edges.len(), g.edges.len());
}
