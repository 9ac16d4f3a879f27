//! Gateway API routing with the real binaries (docs/istio-yaml.md,
//! "Gateway API"): a `Gateway` of class `istio` served by
//! `mesh-waypoint --role gateway` in a pod labelled with its name, an
//! `HTTPRoute` with a path match, a request header filter and a 90/10
//! split, checked by real `curl` from a pod outside the mesh; and an
//! `HTTPRoute` attached to a Service (`parentRefs: [{kind: Service}]`),
//! whose rewrite and header filter the Service's waypoint applies for a
//! mesh client.
use std::{net::IpAddr, time::Duration};

use mesh_e2e::{cluster::Cluster, require_root, Binaries};
use mesh_testkit::try_eventually;

const GATEWAY: &str = "gateway";
const OUTSIDE: &str = "outside";

fn services(list: &[(&str, &str, u16)]) -> String {
    list.iter()
        .map(|(name, vip, port)| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterIP: {vip}\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {port}\n"
            )
        })
        .collect()
}

/// `curl` in `pod` until it gets an answer: (status, body).
fn curl(c: &Cluster, pod: &str, args: &[&str]) -> (u16, String) {
    try_eventually("an answer", Duration::from_secs(20), || {
        c.curl(pod, args).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.gateway_log_tail(GATEWAY)))
}

fn reply(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not a podhttp reply ({e}): {body}"))
}

const INGRESS: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: edge, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /shop}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-gateway-api, value: edge}]}
    backendRefs:
    - {name: stable, port: 9080, weight: 90}
    - {name: canary, port: 9080, weight: 10}
";

#[test]
fn gateway_class_istio_routes_with_a_header_filter_and_a_weighted_split() {
    require_root();
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let mut c = Cluster::new(
        "gapi",
        bins,
        &[
            ("node1", &[OUTSIDE, GATEWAY]),
            ("node2", &["stable", "canary"]),
        ],
    )
    .unwrap();
    c.label_pod(OUTSIDE, &[("istio.io/dataplane-mode", "none")])
        .unwrap();
    // What istiod's Deployment for the Gateway labels its pods with.
    c.label_pod(
        GATEWAY,
        &[
            ("istio.io/dataplane-mode", "none"),
            ("gateway.networking.k8s.io/gateway-name", "edge"),
        ],
    )
    .unwrap();
    c.label_pod("stable", &[("app", "stable")]).unwrap();
    c.label_pod("canary", &[("app", "canary")]).unwrap();
    c.write_config(
        "10-services.yaml",
        &services(&[
            ("stable", "10.96.0.20", 9080),
            ("canary", "10.96.0.21", 9080),
        ]),
    )
    .unwrap();
    c.write_config("20-gateway-api.yaml", INGRESS).unwrap();
    c.serve_http("stable", "v1", 9080, &[]).unwrap();
    c.serve_http("canary", "v2", 9080, &[]).unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    // The backends' own HBONE listeners exist once node2's agent knows them.
    c.wait_ready("node2", 4, &["stable", "canary"]).unwrap();
    c.start_gateway(GATEWAY).unwrap();
    let gw = c.pod(GATEWAY).ip;

    let (status, body) = curl(&c, OUTSIDE, &[&format!("http://{gw}/shop/cart")]);
    assert_eq!(status, 200, "{body}");
    let first = reply(&body);
    assert_eq!(first["headers"]["x-gateway-api"], "edge", "{first}");
    assert_eq!(first["path"], "/shop/cart");
    // PathPrefix is segment-wise; no rule matches elsewhere.
    assert_eq!(
        curl(&c, OUTSIDE, &[&format!("http://{gw}/shopping")]).0,
        404
    );
    assert_eq!(curl(&c, OUTSIDE, &[&format!("http://{gw}/")]).0, 404);

    // 90/10 over a bounded number of requests: canary's share within 5
    // standard deviations of 10% (sd = 3 for 100 draws), and both answer.
    const N: usize = 100;
    let mut canary = 0;
    for _ in 0..N {
        let (status, body) = curl(&c, OUTSIDE, &[&format!("http://{gw}/shop")]);
        assert_eq!(status, 200, "{body}");
        match reply(&body)["pod"].as_str() {
            Some("canary") => canary += 1,
            Some("stable") => {}
            other => panic!("answered by {other:?}"),
        }
    }
    assert!(
        (1..=25).contains(&canary),
        "canary answered {canary} of {N} (weight 10 of 100)"
    );
}

const MESH_ROUTE: &str = "
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews-api, namespace: default}
spec:
  parentRefs: [{group: '', kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /internal}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-mesh-route, value: reviews-api}]}
    backendRefs: [{name: reviews, port: 9080}]
";

#[test]
fn httproute_on_a_service_is_applied_by_its_waypoint() {
    require_root();
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let mut c = Cluster::new(
        "gapim",
        bins,
        &[("node1", &["client", "reviews"]), ("node2", &["waypoint"])],
    )
    .unwrap();
    c.label_pod("reviews", &[("app", "reviews")]).unwrap();
    c.label_namespace("istio.io/use-waypoint", "waypoint")
        .unwrap();
    c.declare_waypoint("waypoint", "waypoint").unwrap();
    c.write_config(
        "10-services.yaml",
        &services(&[("reviews", "10.96.0.30", 9080)]),
    )
    .unwrap();
    c.write_config("20-route.yaml", MESH_ROUTE).unwrap();
    let vip: IpAddr = "10.96.0.30".parse().unwrap();
    c.resolve_services(&[("reviews", "default", vip)]).unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.serve_http("reviews", "v1", 9080, &[]).unwrap();
    c.start_waypoint("waypoint", "waypoint").unwrap();

    let (status, body) = curl(&c, "client", &["http://reviews:9080/api/items"]);
    assert_eq!(status, 200, "{body}\n{}", c.gateway_log_tail("waypoint"));
    let r = reply(&body);
    assert_eq!(r["path"], "/internal/items", "{r}");
    assert_eq!(r["headers"]["x-mesh-route"], "reviews-api", "{r}");
    // A request no rule of the Service's routes matches: 404 (as Istio's
    // GAMMA routes).
    let (status, body) = curl(&c, "client", &["http://reviews:9080/other"]);
    assert_eq!(status, 404, "{body}");
}
