use std::collections::BTreeMap;

use mesh_xds::proto::istio_workload::{address, gateway_address, Address, TunnelProtocol};

use super::*;
use crate::model::{self, MeshState, MtlsMode, Node, PeerAuthentication};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod(
    ns: &str,
    name: &str,
    ip: &str,
    node: &str,
    mesh: bool,
    l: &[(&str, &str)],
) -> model::Workload {
    model::Workload {
        uid: format!("Kubernetes//Pod/{ns}/{name}"),
        name: name.into(),
        namespace: ns.into(),
        service_account: "default".into(),
        ips: vec![ip.parse().unwrap()],
        node: node.into(),
        labels: labels(l),
        mesh,
        services: BTreeMap::new(),
        probe_ports: vec![],
    }
}

fn state(workloads: Vec<model::Workload>, pas: Vec<PeerAuthentication>) -> MeshState {
    MeshState {
        trust_domain: "cluster.local".into(),
        workloads: workloads.into_iter().map(|w| (w.uid.clone(), w)).collect(),
        services: BTreeMap::new(),
        nodes: [
            (
                "node-1".to_string(),
                Node {
                    name: "node-1".into(),
                    address: "172.18.0.2".parse().unwrap(),
                },
            ),
            (
                "node-2".to_string(),
                Node {
                    name: "node-2".into(),
                    address: "fd00::2".parse().unwrap(),
                },
            ),
        ]
        .into(),
        peer_authentications: pas,
        authorization_policies: vec![],
        ..Default::default()
    }
}

fn pa(ns: &str, name: &str, selector: &[(&str, &str)], mode: MtlsMode) -> PeerAuthentication {
    PeerAuthentication {
        name: name.into(),
        namespace: ns.into(),
        selector: labels(selector),
        mode,
    }
}

fn converted(s: &MeshState) -> BTreeMap<String, Address> {
    addresses(s, &ConvertOptions::default())
        .into_iter()
        .collect()
}

fn workload_of(a: &Address) -> &mesh_xds::proto::istio_workload::Workload {
    match &a.r#type {
        Some(address::Type::Workload(w)) => w,
        other => panic!("not a workload: {other:?}"),
    }
}

fn policies_of(s: &MeshState, uid: &str) -> Vec<String> {
    workload_of(&converted(s)[uid])
        .authorization_policies
        .clone()
}

#[test]
fn mesh_workload_fields() {
    let mut w = pod(
        "shop",
        "web-7d9f8b6c5-x2x4z",
        "10.244.1.5",
        "node-1",
        true,
        &[
            ("app", "web"),
            ("version", "v2"),
            ("pod-template-hash", "7d9f8b6c5"),
        ],
    );
    w.service_account = "web-sa".into();
    w.ips.push("fd00:10:244::5".parse().unwrap());
    w.services.insert(
        "shop/web.shop.svc.cluster.local".into(),
        [(80, 8080), (443, 8443)].into(),
    );
    let s = state(vec![w], vec![]);
    let got = converted(&s);
    let w = workload_of(&got["Kubernetes//Pod/shop/web-7d9f8b6c5-x2x4z"]);
    assert_eq!(w.uid, "Kubernetes//Pod/shop/web-7d9f8b6c5-x2x4z");
    assert_eq!(
        (w.name.as_str(), w.namespace.as_str()),
        ("web-7d9f8b6c5-x2x4z", "shop")
    );
    assert_eq!(
        w.addresses,
        vec![
            vec![10, 244, 1, 5],
            "fd00:10:244::5"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
                .to_vec()
        ]
    );
    assert_eq!(w.tunnel_protocol, TunnelProtocol::Hbone as i32);
    assert_eq!(
        (w.trust_domain.as_str(), w.service_account.as_str()),
        ("cluster.local", "web-sa")
    );
    assert_eq!(w.node, "node-1");
    // As istiod: within one network, no gateway; clients tunnel to the
    // pod's own listener.
    assert!(w.network_gateway.is_none(), "{w:?}");
    assert_eq!(
        (w.canonical_name.as_str(), w.canonical_revision.as_str()),
        ("web", "v2")
    );
    assert_eq!(
        (w.workload_name.as_str(), w.workload_type),
        ("web", WorkloadType::Deployment as i32)
    );
    let ports = &w.services["shop/web.shop.svc.cluster.local"].ports;
    assert_eq!(
        ports
            .iter()
            .map(|p| (p.service_port, p.target_port))
            .collect::<Vec<_>>(),
        [(80, 8080), (443, 8443)]
    );
    assert_eq!(w.cluster_id, "Kubernetes");
    assert!(w.authorization_policies.is_empty());
}

#[test]
fn non_mesh_workload_is_plain() {
    let s = state(
        vec![pod("legacy", "db", "10.244.2.9", "node-2", false, &[])],
        vec![pa("istio-system", "default", &[], MtlsMode::Strict)],
    );
    let got = converted(&s);
    let w = workload_of(&got["Kubernetes//Pod/legacy/db"]);
    assert_eq!(w.tunnel_protocol, TunnelProtocol::None as i32);
    assert!(w.network_gateway.is_none());
    assert!(
        w.authorization_policies.is_empty(),
        "not served by an agent"
    );
    assert_eq!(
        (w.workload_name.as_str(), w.workload_type),
        ("db", WorkloadType::Pod as i32)
    );
    assert_eq!(
        (w.canonical_name.as_str(), w.canonical_revision.as_str()),
        ("db", "latest")
    );
}

#[test]
fn no_gateway_within_one_network_whatever_the_node() {
    let s = state(
        vec![
            pod("a", "p", "fd00::10", "node-2", true, &[]),
            pod("a", "q", "10.0.0.1", "node-9", true, &[]),
        ],
        vec![],
    );
    let got = converted(&s);
    for uid in ["Kubernetes//Pod/a/p", "Kubernetes//Pod/a/q"] {
        assert!(workload_of(&got[uid]).network_gateway.is_none(), "{uid}");
    }
}

#[test]
fn service_resource() {
    let mut s = state(vec![], vec![]);
    s.services.insert(
        "shop/web".into(),
        model::Service {
            name: "web".into(),
            namespace: "shop".into(),
            hostname: "web.shop.svc.cluster.local".into(),
            vips: vec!["10.96.0.20".parse().unwrap()],
            ports: [(80, 8080)].into(),
            ..Default::default()
        },
    );
    let got = converted(&s);
    let Some(address::Type::Service(svc)) = &got["shop/web.shop.svc.cluster.local"].r#type else {
        panic!("service missing: {got:?}");
    };
    assert_eq!((svc.name.as_str(), svc.namespace.as_str()), ("web", "shop"));
    assert_eq!(svc.hostname, "web.shop.svc.cluster.local");
    assert_eq!(svc.addresses.len(), 1);
    assert_eq!(svc.addresses[0].address, vec![10, 96, 0, 20]);
    assert_eq!(
        (svc.ports[0].service_port, svc.ports[0].target_port),
        (80, 8080)
    );
}

#[test]
fn no_peer_authentication_no_policy() {
    let s = state(vec![pod("a", "p", "10.0.0.1", "node-1", true, &[])], vec![]);
    assert!(authorizations(&s, &ConvertOptions::default()).is_empty());
    assert!(policies_of(&s, "Kubernetes//Pod/a/p").is_empty());
}

#[test]
fn strict_policy_shape() {
    let s = state(
        vec![],
        vec![pa("istio-system", "default", &[], MtlsMode::Strict)],
    );
    let got = authorizations(&s, &ConvertOptions::default());
    assert_eq!(got.len(), 1);
    let (name, a) = &got[0];
    assert_eq!(name, "istio-system/istio_converted_static_strict");
    assert_eq!(
        (a.name.as_str(), a.namespace.as_str()),
        ("istio_converted_static_strict", "istio-system")
    );
    assert_eq!(a.scope, Scope::WorkloadSelector as i32);
    assert_eq!(a.action, Action::Deny as i32);
    assert_eq!(a.rules.len(), 1);
    assert_eq!(a.rules[0].clauses.len(), 1);
    let m = &a.rules[0].clauses[0].matches;
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].not_principals,
        vec![StringMatch {
            match_type: Some(MatchType::Presence(mesh_xds::proto::wkt::Empty {}))
        }]
    );
    assert!(m[0].principals.is_empty() && m[0].destination_ports.is_empty());
}

#[test]
fn mesh_wide_strict_applies_to_every_mesh_workload() {
    let s = state(
        vec![
            pod("a", "p1", "10.0.0.1", "node-1", true, &[]),
            pod("b", "p2", "10.0.0.2", "node-1", true, &[]),
        ],
        vec![pa("istio-system", "default", &[], MtlsMode::Strict)],
    );
    let want = vec!["istio-system/istio_converted_static_strict".to_string()];
    assert_eq!(policies_of(&s, "Kubernetes//Pod/a/p1"), want);
    assert_eq!(policies_of(&s, "Kubernetes//Pod/b/p2"), want);
}

#[test]
fn precedence_workload_over_namespace_over_mesh() {
    let pods = vec![
        pod(
            "a",
            "plain",
            "10.0.0.1",
            "node-1",
            true,
            &[("app", "plain")],
        ),
        pod(
            "a",
            "locked",
            "10.0.0.2",
            "node-1",
            true,
            &[("app", "locked")],
        ),
        pod(
            "b",
            "other",
            "10.0.0.3",
            "node-1",
            true,
            &[("app", "locked")],
        ),
    ];
    let s = state(
        pods,
        vec![
            pa("istio-system", "default", &[], MtlsMode::Strict),
            pa("a", "ns-permissive", &[], MtlsMode::Permissive),
            pa("a", "lock", &[("app", "locked")], MtlsMode::Strict),
            // A selector policy in the root namespace selects nothing elsewhere.
            pa(
                "istio-system",
                "root-selector",
                &[("app", "locked")],
                MtlsMode::Permissive,
            ),
        ],
    );
    let strict = vec!["istio-system/istio_converted_static_strict".to_string()];
    assert!(
        policies_of(&s, "Kubernetes//Pod/a/plain").is_empty(),
        "namespace PERMISSIVE beats mesh STRICT"
    );
    assert_eq!(
        policies_of(&s, "Kubernetes//Pod/a/locked"),
        strict,
        "workload STRICT beats namespace PERMISSIVE"
    );
    assert_eq!(
        policies_of(&s, "Kubernetes//Pod/b/other"),
        strict,
        "mesh STRICT"
    );
}

#[test]
fn workload_permissive_and_disable_override_namespace_strict() {
    let pods = vec![
        pod("a", "p1", "10.0.0.1", "node-1", true, &[("app", "x")]),
        pod("a", "p2", "10.0.0.2", "node-1", true, &[("app", "y")]),
        pod("a", "p3", "10.0.0.3", "node-1", true, &[]),
    ];
    let s = state(
        pods,
        vec![
            pa("a", "strict", &[], MtlsMode::Strict),
            pa("a", "x", &[("app", "x")], MtlsMode::Permissive),
            pa("a", "y", &[("app", "y")], MtlsMode::Disable),
        ],
    );
    assert!(policies_of(&s, "Kubernetes//Pod/a/p1").is_empty());
    assert!(policies_of(&s, "Kubernetes//Pod/a/p2").is_empty());
    assert_eq!(policies_of(&s, "Kubernetes//Pod/a/p3").len(), 1);
}

#[test]
fn permissive_only_publishes_but_references_nothing() {
    let s = state(
        vec![pod("a", "p", "10.0.0.1", "node-1", true, &[])],
        vec![pa("istio-system", "default", &[], MtlsMode::Permissive)],
    );
    assert_eq!(
        authorizations(&s, &ConvertOptions::default()).len(),
        1,
        "istiod publishes it whenever a PeerAuthentication exists"
    );
    assert!(policies_of(&s, "Kubernetes//Pod/a/p").is_empty());
}

#[test]
fn custom_root_namespace() {
    let opts = ConvertOptions {
        root_namespace: "mesh-root".into(),
        ..Default::default()
    };
    let s = state(
        vec![pod("a", "p", "10.0.0.1", "node-1", true, &[])],
        vec![pa("mesh-root", "default", &[], MtlsMode::Strict)],
    );
    let w = workload_address(&s, &s.workloads["Kubernetes//Pod/a/p"], &opts);
    assert_eq!(
        w.authorization_policies,
        ["mesh-root/istio_converted_static_strict"]
    );
    assert_eq!(
        authorizations(&s, &opts)[0].0,
        "mesh-root/istio_converted_static_strict"
    );
    // With the default root namespace the same policy is namespace-wide for "mesh-root" only.
    assert!(policies_of(&s, "Kubernetes//Pod/a/p").is_empty());
}

#[test]
fn service_attached_to_a_waypoint_publishes_its_first_pod() {
    let mut s = state(
        vec![
            pod("shop", "wp-b", "10.0.0.9", "node-1", false, &[]),
            pod("shop", "wp-a", "10.0.0.8", "node-1", false, &[]),
        ],
        vec![],
    );
    s.waypoints.insert(
        "shop/wp".into(),
        model::Waypoint {
            name: "wp".into(),
            namespace: "shop".into(),
            file: "w.yaml".into(),
            pods: vec![
                "Kubernetes//Pod/shop/wp-a".into(),
                "Kubernetes//Pod/shop/wp-b".into(),
            ],
        },
    );
    let svc = |name: &str, waypoint: Option<&str>| model::Service {
        name: name.into(),
        namespace: "shop".into(),
        hostname: format!("{name}.shop.svc.cluster.local"),
        vips: vec!["10.96.0.20".parse().unwrap()],
        ports: [(80, 8080)].into(),
        waypoint: waypoint.map(|w| model::WaypointRef {
            namespace: "shop".into(),
            name: w.into(),
        }),
        ..Default::default()
    };
    s.services.insert("shop/web".into(), svc("web", Some("wp")));
    s.services
        .insert("shop/api".into(), svc("api", Some("missing")));
    s.services.insert("shop/db".into(), svc("db", None));
    let got = converted(&s);
    let waypoint = |name: &str| match &got[&format!("shop/{name}.shop.svc.cluster.local")].r#type {
        Some(address::Type::Service(svc)) => svc.waypoint.clone(),
        other => panic!("service {name} missing: {other:?}"),
    };
    let web = waypoint("web").expect("web has a waypoint");
    assert_eq!(web.hbone_mtls_port, 15008);
    let Some(gateway_address::Destination::Address(a)) = web.destination else {
        panic!("waypoint destination is not an address: {web:?}");
    };
    assert_eq!(a.address, vec![10, 0, 0, 8]);
    assert_eq!(waypoint("api"), None);
    assert_eq!(waypoint("db"), None);
}

#[test]
fn pending_pod_is_a_mesh_workload_without_addresses() {
    // The agent decides a pod's capture before its CNI ADD gives
    // it an address, so the pod is published as soon as it is scheduled.
    let mut w = pod("shop", "pending", "10.244.1.9", "node-1", true, &[]);
    w.ips.clear();
    let s = state(vec![w], vec![]);
    let all = converted(&s);
    let out = workload_of(&all["Kubernetes//Pod/shop/pending"]);
    assert!(out.addresses.is_empty(), "{out:?}");
    assert_eq!(out.tunnel_protocol, TunnelProtocol::Hbone as i32);
}
