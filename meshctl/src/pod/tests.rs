use serde_json::json;

use super::*;

#[test]
fn pod_dot_namespace_splits_at_the_last_dot() {
    assert_eq!(
        PodRef::parse("reviews-v1-7f9.bookinfo"),
        Some(PodRef {
            name: "reviews-v1-7f9".into(),
            namespace: Some("bookinfo".into())
        })
    );
    assert_eq!(
        PodRef::parse("waypoint"),
        Some(PodRef {
            name: "waypoint".into(),
            namespace: None
        })
    );
    assert_eq!(PodRef::parse("a.default").unwrap().describe(), "a.default");
    // Addresses and paths are no pod names.
    for not_a_pod in ["10.0.0.1:15000", "", "a.", ".ns", "a/b", "Upper", "a.b.c"] {
        assert_eq!(PodRef::parse(not_a_pod), None, "{not_a_pod}");
    }
}

fn dump() -> serde_json::Value {
    json!({
        "workloads": [
            {"uid": "Kubernetes//Pod/default/a", "name": "a", "namespace": "default",
             "identity": "spiffe://cluster.local/ns/default/sa/a", "ips": ["10.244.1.2"],
             "node": "node1", "mesh": true},
            {"uid": "Kubernetes//Pod/other/a", "name": "a", "namespace": "other",
             "ips": ["10.244.1.3"], "node": "node1"},
            {"uid": "Kubernetes//Pod/default/b", "name": "b", "namespace": "default",
             "ips": ["10.244.2.2"], "node": "node2"}
        ],
        "nodes": [{"name": "node1", "address": "10.0.0.1"}, {"name": "node2", "address": "bad"}]
    })
}

#[test]
fn pods_and_nodes_are_found_in_the_control_plane_dump() {
    let doc = dump();
    let a = find_pod(&doc, &PodRef::parse("a.default").unwrap()).unwrap();
    assert_eq!(a.identity, "spiffe://cluster.local/ns/default/sa/a");
    assert_eq!(pod_ip(&a).unwrap().to_string(), "10.244.1.2");
    assert_eq!(node_address(&doc, &a.node).unwrap().to_string(), "10.0.0.1");
    let b = find_pod(&doc, &PodRef::parse("b").unwrap()).unwrap();
    assert_eq!(b.namespace, "default");

    let ambiguous = find_pod(&doc, &PodRef::parse("a").unwrap()).unwrap_err();
    assert!(
        ambiguous
            .to_string()
            .contains("several namespaces (default, other)"),
        "{ambiguous}"
    );
    let missing = find_pod(&doc, &PodRef::parse("c.default").unwrap()).unwrap_err();
    assert!(
        missing.to_string().contains("no pod c.default"),
        "{missing}"
    );
    assert!(node_address(&doc, "node2")
        .unwrap_err()
        .to_string()
        .contains("is no IP"));
    assert!(node_address(&doc, "node9")
        .unwrap_err()
        .to_string()
        .contains("no node \"node9\""));
}

#[test]
fn the_namespace_named_after_the_pod_and_the_control_planes_wins() {
    let c = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(pick(&c(&["x"]), "node1", None), c(&["x"]));
    assert_eq!(
        pick(&c(&["m1-node1", "m1-node2", "other"]), "node1", None),
        c(&["m1-node1"])
    );
    assert_eq!(
        pick(&c(&["m1-node1", "m2-node1"]), "node1", Some("m2-net")),
        c(&["m2-node1"])
    );
    assert_eq!(
        pick(&c(&["m1-node1", "m2-node1"]), "node1", None),
        c(&["m1-node1", "m2-node1"])
    );
}

#[test]
fn an_address_no_namespace_holds_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-netns"), "").unwrap();
    let err = netns_of(dir.path(), "192.0.2.77".parse().unwrap(), "b", "pod", None).unwrap_err();
    assert!(
        err.to_string()
            .contains("holds 192.0.2.77, the address of pod b"),
        "{err}"
    );
}
