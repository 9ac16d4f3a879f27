//! Gateway API status written back through the fake API server: an
//! HTTPRoute's `parents[]` (Accepted, ResolvedRefs, controllerName,
//! observedGeneration) and a Gateway's conditions and listeners.
use mesh_testkit::eventually_async;
use serde_json::{json, Value};

use super::{kube_setup, KubeSetup, CONVERGE};

fn condition(conditions: &Value, kind: &str) -> Option<(String, String)> {
    conditions.as_array()?.iter().find_map(|c| {
        (c["type"] == kind).then(|| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
}

/// Waits (bounded) until `get` returns a status `check` is happy with.
async fn wait_status(
    kube: &KubeSetup,
    what: &str,
    kind: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually_async(what, CONVERGE, || async {
        let object = kube.fake.get(kind, "default", name).unwrap();
        if check(&object["status"]) {
            Ok(())
        } else {
            Err(format!(
                "{}; patches {:?}",
                object["status"],
                kube.fake.statuses()
            ))
        }
    })
    .await;
    kube.fake.get(kind, "default", name).unwrap()["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_and_gateway_status_is_written() {
    let kube = kube_setup(&[]).await;
    kube.fake
        .apply(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {"gatewayClassName": "istio", "listeners": [
                {"name": "http", "port": 8080, "protocol": "HTTP"},
                {"name": "tcp", "port": 9000, "protocol": "TCP"}]}}),
        )
        .unwrap();
    kube.fake
        .apply(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "edge"}, {"name": "missing"}],
                "rules": [{"backendRefs": [
                    {"name": "reviews", "port": 9080},
                    {"name": "nowhere", "port": 80}]}]}}),
        )
        .unwrap();
    let route = wait_status(&kube, "HTTPRoute parents", "HTTPRoute", "shop", |s| {
        s["parents"].as_array().is_some_and(|p| p.len() == 2)
    })
    .await;
    let parents = route["parents"].as_array().unwrap();
    let edge = &parents[0];
    assert_eq!(edge["controllerName"], "istio.io/gateway-controller");
    assert_eq!(edge["parentRef"]["name"], "edge");
    assert_eq!(
        condition(&edge["conditions"], "Accepted"),
        Some(("True".into(), "Accepted".into()))
    );
    assert_eq!(
        condition(&edge["conditions"], "ResolvedRefs"),
        Some(("False".into(), "BackendNotFound".into()))
    );
    let generation =
        kube.fake.get("HTTPRoute", "default", "shop").unwrap()["metadata"]["generation"].clone();
    assert!(generation.is_u64());
    assert_eq!(edge["conditions"][0]["observedGeneration"], generation);
    assert_eq!(
        condition(&parents[1]["conditions"], "Accepted"),
        Some(("False".into(), "NoMatchingParent".into()))
    );

    let gateway = wait_status(
        &kube,
        "Gateway listeners",
        "Gateway.gateway.networking.k8s.io",
        "edge",
        |s| s["listeners"][0]["attachedRoutes"] == 1,
    )
    .await;
    assert_eq!(
        condition(&gateway["conditions"], "Accepted"),
        Some(("True".into(), "Accepted".into()))
    );
    // No pod carries the Gateway's name label: not programmed.
    assert_eq!(
        condition(&gateway["conditions"], "Programmed"),
        Some(("False".into(), "NoResources".into()))
    );
    assert_eq!(
        condition(&gateway["listeners"][1]["conditions"], "Accepted"),
        Some(("False".into(), "UnsupportedProtocol".into()))
    );

    // The backend appears: ResolvedRefs turns True.
    kube.fake
        .apply(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "nowhere", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.99", "ports": [{"port": 80}]}}))
        .unwrap();
    wait_status(&kube, "ResolvedRefs=True", "HTTPRoute", "shop", |s| {
        condition(&s["parents"][0]["conditions"], "ResolvedRefs")
            == Some(("True".into(), "ResolvedRefs".into()))
    })
    .await;
}
