//! The summary from a control-plane dump shaped as
//! docs/contracts/control-admin.md describes it.
use serde_json::json;

use super::*;

fn dump() -> Value {
    json!({
        "trust_domain": "cluster.local",
        "workloads": [
            {"uid": "Kubernetes//Pod/default/reviews-v1", "name": "reviews-v1", "namespace": "default",
             "service_account": "reviews", "identity": "spiffe://cluster.local/ns/default/sa/reviews",
             "ips": ["10.244.1.3"], "node": "node1", "labels": {"app": "reviews", "version": "v1"},
             "mesh": true, "services": {"default/reviews.default.svc.cluster.local": {"9080": 9080}}},
            {"uid": "Kubernetes//Pod/default/waypoint", "name": "waypoint", "namespace": "default",
             "identity": "spiffe://cluster.local/ns/default/sa/waypoint", "ips": ["10.244.1.9"],
             "node": "node1", "labels": {}, "mesh": true, "services": {}}
        ],
        "services": [
            {"key": "default/reviews", "name": "reviews", "namespace": "default",
             "hostname": "reviews.default.svc.cluster.local", "vips": ["10.96.0.10"],
             "ports": {"9080": 9080}, "waypoint": "default/waypoint"},
            {"key": "default/ratings", "name": "ratings", "namespace": "default",
             "hostname": "ratings.default.svc.cluster.local", "vips": ["10.96.0.11"],
             "ports": {"9080": 9080}, "waypoint": null}
        ],
        "nodes": [{"name": "node1", "address": "10.0.0.1"}],
        "waypoints": [{"name": "waypoint", "namespace": "default",
                       "pods": ["Kubernetes//Pod/default/waypoint"], "address": "10.244.1.9",
                       "services": ["reviews.default.svc.cluster.local"]}],
        "peer_authentications": [
            {"name": "default", "namespace": "istio-system", "selector": {}, "mode": "PERMISSIVE"},
            {"name": "strict", "namespace": "default", "selector": {}, "mode": "STRICT"},
            {"name": "other-app", "namespace": "default", "selector": {"app": "ratings"}, "mode": "DISABLE"}
        ],
        "xds": {
            "type.googleapis.com/istio.workload.Address": [
                {"name": "Kubernetes//Pod/default/reviews-v1", "version": "1", "resource": {"workload": {
                    "uid": "Kubernetes//Pod/default/reviews-v1",
                    "waypoint": {"destination": {"address": {"network": "", "address": "10.244.1.9"}},
                                 "hbone_mtls_port": 15008},
                    "authorization_policies": ["default/allow-productpage"]}}}
            ],
            "type.googleapis.com/istio.security.Authorization": [
                {"name": "default/allow-productpage", "version": "1", "resource": {
                    "name": "allow-productpage", "namespace": "default", "scope": "WORKLOAD_SELECTOR",
                    "action": "ALLOW"}},
                {"name": "default/other", "version": "1", "resource": {
                    "name": "other", "namespace": "default", "scope": "WORKLOAD_SELECTOR", "action": "DENY"}},
                {"name": "default/ns-wide", "version": "1", "resource": {
                    "name": "ns-wide", "namespace": "default", "scope": "NAMESPACE", "action": "DENY"}},
                {"name": "shop/ns-wide", "version": "1", "resource": {
                    "name": "ns-wide", "namespace": "shop", "scope": "NAMESPACE", "action": "DENY"}},
                {"name": "istio-system/global", "version": "1", "resource": {
                    "name": "global", "namespace": "istio-system", "scope": "GLOBAL", "action": "AUDIT"}}
            ]
        },
        "resources": [
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "reviews-route", "namespace": "default"},
             "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "private", "namespace": "shop"},
             "spec": {"hosts": ["reviews.default.svc.cluster.local"], "exportTo": ["."]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "shared", "namespace": "shop"},
             "spec": {"hosts": ["reviews.default"], "exportTo": ["*"]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "at-the-gateway", "namespace": "default"},
             "spec": {"hosts": ["reviews"], "gateways": ["bookinfo-gateway"]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "ratings-route", "namespace": "default"},
             "spec": {"hosts": ["ratings"]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
             "metadata": {"name": "reviews", "namespace": "default"},
             "spec": {"host": "reviews.default.svc.cluster.local", "subsets": [{"name": "v1"}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
             "metadata": {"name": "all-of-default", "namespace": "default"},
             "spec": {"host": "*.default.svc.cluster.local"}},
            {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
             "metadata": {"name": "l7-reviews", "namespace": "default"},
             "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
                      "action": "DENY"}},
            {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
             "metadata": {"name": "l7-ratings", "namespace": "default"},
             "spec": {"targetRef": {"kind": "Service", "group": "", "name": "ratings"}}}
        ]
    })
}

#[test]
fn a_pod_behind_a_waypoint_with_routes_and_policies() {
    let s = summarize(&dump(), &PodRef::parse("reviews-v1.default").unwrap()).unwrap();
    assert_eq!(s.identity, "spiffe://cluster.local/ns/default/sa/reviews");
    assert_eq!(s.node, "node1");
    assert!(s.mesh);
    assert_eq!(s.waypoint.as_deref(), Some("default/waypoint"));
    assert_eq!(s.serves_waypoint, None);
    assert_eq!(s.services.len(), 1, "{:?}", s.services);
    let svc = &s.services[0];
    assert_eq!(svc.name, "reviews");
    assert_eq!(svc.ports["9080"], 9080);
    assert_eq!(svc.waypoint.as_deref(), Some("default/waypoint"));
    // Not `shop/private` (exported to shop only), not the gateway-bound one.
    assert_eq!(
        svc.virtual_services,
        ["default/reviews-route", "shop/shared"]
    );
    assert_eq!(
        svc.destination_rules,
        ["default/reviews", "default/all-of-default"]
    );
    let policies: Vec<(String, &str, &str)> = s
        .authorization_policies
        .iter()
        .map(|p| {
            (
                format!("{}/{}", p.namespace, p.name),
                p.scope.as_str(),
                p.action.as_str(),
            )
        })
        .collect();
    assert_eq!(
        policies,
        [
            ("default/allow-productpage".to_string(), "selector", "ALLOW"),
            ("default/ns-wide".to_string(), "namespace", "DENY"),
            ("istio-system/global".to_string(), "mesh-wide", "AUDIT"),
            ("default/l7-reviews".to_string(), "waypoint", "DENY"),
        ]
    );
    assert_eq!(s.peer_authentication.mode, "STRICT");
    assert_eq!(
        s.peer_authentication.from.as_deref(),
        Some("default/strict")
    );

    let text = render(&s, Output::Table);
    for want in [
        "Pod: reviews-v1.default",
        "Service: reviews.default  ports 9080->9080",
        "   VirtualService: default/reviews-route",
        "   DestinationRule: default/reviews",
        "AuthorizationPolicy: default/l7-reviews  DENY (waypoint)",
        "PeerAuthentication: STRICT (default/strict)",
    ] {
        assert!(text.contains(want), "{want:?} missing in\n{text}");
    }
    let json: Value = serde_json::from_str(&render(&s, Output::Json)).unwrap();
    assert_eq!(json["services"][0]["virtual_services"][1], "shop/shared");
}

#[test]
fn a_waypoint_pod_and_unknown_pods() {
    let s = summarize(&dump(), &PodRef::parse("waypoint").unwrap()).unwrap();
    assert_eq!(s.serves_waypoint.as_deref(), Some("default/waypoint"));
    assert!(s.services.is_empty());
    assert!(render(&s, Output::Table).contains("Services: none select this pod"));
    let err = summarize(&dump(), &PodRef::parse("ghost.default").unwrap()).unwrap_err();
    assert!(err.to_string().contains("no pod ghost.default"), "{err}");
}

#[test]
fn mesh_wide_peer_authentication_and_the_default() {
    let mut doc = dump();
    doc["peer_authentications"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    let s = summarize(&doc, &PodRef::parse("reviews-v1").unwrap()).unwrap();
    assert_eq!(s.peer_authentication.mode, "PERMISSIVE");
    assert_eq!(
        s.peer_authentication.from.as_deref(),
        Some("istio-system/default")
    );
    doc["peer_authentications"] = json!([
        {"name": "reviews", "namespace": "default", "selector": {"app": "reviews"}, "mode": "DISABLE"}
    ]);
    let s = summarize(&doc, &PodRef::parse("reviews-v1").unwrap()).unwrap();
    assert_eq!(s.peer_authentication.mode, "DISABLE");
    doc["peer_authentications"] = json!([]);
    let s = summarize(&doc, &PodRef::parse("reviews-v1").unwrap()).unwrap();
    assert_eq!(s.peer_authentication.from, None);
    assert!(render(&s, Output::Table).contains("PeerAuthentication: PERMISSIVE (default)"));
}
