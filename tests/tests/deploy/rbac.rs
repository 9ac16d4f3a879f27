//! The ClusterRole mesh-control must have, rule by rule, and a reader
//! flattening rendered RBAC rules for comparison.
use std::collections::BTreeSet;

use serde_json::Value;

use super::strings;

/// (group, resource, verb) triples of every ClusterRole/Role rule.
pub fn rbac_triples(objs: &[Value]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for role in objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        for rule in role["rules"].as_array().expect("rules") {
            assert!(
                rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
                "unexpected rule shape {rule}"
            );
            for g in strings(&rule["apiGroups"]) {
                for r in strings(&rule["resources"]) {
                    for v in strings(&rule["verbs"]) {
                        out.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    out
}

/// What `deploy/base/mesh-control-rbac.yaml` grants (each rule justified
/// there): read the watched kinds, patch their status, events, TokenReviews.
pub fn expected_rbac() -> BTreeSet<(String, String, String)> {
    let mut want = BTreeSet::new();
    let mut add = |g: &str, rs: &[&str], vs: &[&str]| {
        for r in rs {
            for v in vs {
                want.insert((g.to_string(), r.to_string(), v.to_string()));
            }
        }
    };
    let read = ["get", "list", "watch"];
    add("", &["namespaces", "pods", "services", "nodes"], &read);
    add("discovery.k8s.io", &["endpointslices"], &read);
    let istio_net = [
        "virtualservices",
        "destinationrules",
        "serviceentries",
        "gateways",
    ];
    let istio_sec = ["authorizationpolicies", "peerauthentications"];
    add("networking.istio.io", &istio_net, &read);
    add("security.istio.io", &istio_sec, &read);
    add(
        "gateway.networking.k8s.io",
        &["gateways", "httproutes", "referencegrants"],
        &read,
    );
    let status = |rs: &[&str]| rs.iter().map(|r| format!("{r}/status")).collect::<Vec<_>>();
    for (g, rs) in [
        ("networking.istio.io", status(&istio_net)),
        ("security.istio.io", status(&istio_sec)),
        (
            "gateway.networking.k8s.io",
            status(&["gateways", "httproutes"]),
        ),
    ] {
        let rs: Vec<&str> = rs.iter().map(String::as_str).collect();
        add(g, &rs, &["patch"]);
    }
    add("", &["events"], &["create"]);
    add("authentication.k8s.io", &["tokenreviews"], &["create"]);
    want
}
