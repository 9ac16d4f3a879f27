//! Actions beyond the seeds: redirects, direct responses, rewrites,
//! mirrors, header edits, consistent hashing, source matches, ports.
use envoy_types::pb::envoy::config::{
    core::v3::header_value_option::HeaderAppendAction,
    route::v3::{route::Action, route_action::hash_policy::PolicySpecifier, VirtualHost},
};

use super::*;
use crate::{
    source::{load_files, SourceConfig},
    translate::waypoint::{route_match::MESH_METADATA, tests::base_yaml, translate, Translation},
};

const VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: order, namespace: tutorial}
spec:
  hosts: [order]
  http:
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: shop.example, redirectCode: 308}
  - name: teapot
    match: [{uri: {prefix: /tea}, port: 8080}, {uri: {prefix: /never}, port: 9999}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - name: api
    match: [{uri: {prefix: /api}, sourceLabels: {app: reviews}, sourceNamespace: tutorial}]
    rewrite: {uri: /v2/api, authority: order-v2}
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
    route:
    - destination: {host: delivery}
      headers: {response: {set: {x-from: delivery}}}
    mirror: {host: reviews, subset: v3}
    mirrorPercentage: {value: 12.5}
    mirrors:
    - destination: {host: order, port: {number: 8080}}
      percentage: {value: 50}
  - name: gone
    match: [{gateways: [some-gateway]}]
    route: [{destination: {host: order}}]
  - route:
    - {destination: {host: order, subset: a}, weight: 0}
    - {destination: {host: order, subset: b}, weight: 5}
    retries: {attempts: 0}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: delivery, namespace: tutorial}
spec:
  host: delivery
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
"#;

fn translated() -> Translation {
    let state = load_files(
        &[
            ("00-base.yaml".into(), base_yaml()),
            ("10-vs.yaml".into(), VS.into()),
        ],
        &SourceConfig::default(),
    )
    .unwrap_or_else(|p| panic!("{p:?}"))
    .state;
    translate(&state, "istio-system")
}

fn order(t: &Translation) -> &VirtualHost {
    t.routes["waypoint/tutorial/wp"]
        .virtual_hosts
        .iter()
        .find(|v| v.name == "order.tutorial.svc.cluster.local:8080")
        .unwrap()
}

#[test]
fn redirect_and_direct_response() {
    let t = translated();
    let routes = &order(&t).routes;
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    // `gone` binds to a gateway only; the /never match is for another port.
    assert_eq!(
        names,
        [
            "tutorial/order/moved",
            "tutorial/order/teapot",
            "tutorial/order/api",
            "tutorial/order/4"
        ]
    );
    let Some(Action::Redirect(r)) = &routes[0].action else {
        panic!("not a redirect");
    };
    assert_eq!(r.host_redirect, "shop.example");
    assert_eq!(
        r.response_code,
        RedirectResponseCode::PermanentRedirect as i32
    );
    assert_eq!(
        r.path_rewrite_specifier,
        Some(PathRewriteSpecifier::PathRedirect("/new".into()))
    );
    let Some(Action::DirectResponse(d)) = &routes[1].action else {
        panic!("not a direct response");
    };
    assert_eq!(d.status, 418);
    assert_eq!(
        d.body.as_ref().unwrap().specifier,
        Some(data_source::Specifier::InlineString(
            "short and stout".into()
        ))
    );
}

#[test]
fn rewrite_headers_mirror_hash_and_sources() {
    let t = translated();
    let r = &order(&t).routes[2];
    let Some(Action::Route(a)) = &r.action else {
        panic!("no route action");
    };
    assert_eq!(
        a.cluster_specifier,
        Some(ClusterSpecifier::Cluster(
            "outbound|8080||delivery.tutorial.svc.cluster.local".into()
        ))
    );
    assert_eq!(a.prefix_rewrite, "/v2/api");
    assert_eq!(
        a.host_rewrite_specifier,
        Some(HostRewriteSpecifier::HostRewriteLiteral("order-v2".into()))
    );
    let m = &a.request_mirror_policies[0];
    assert_eq!(
        m.cluster,
        "outbound|9080|v3|reviews.tutorial.svc.cluster.local"
    );
    assert_eq!(
        m.runtime_fraction
            .as_ref()
            .unwrap()
            .default_value
            .unwrap()
            .numerator,
        125_000
    );
    assert_eq!(
        a.request_mirror_policies[1].cluster,
        "outbound|8080||order.tutorial.svc.cluster.local"
    );
    assert_eq!(
        a.request_mirror_policies[1]
            .runtime_fraction
            .as_ref()
            .unwrap()
            .default_value
            .unwrap()
            .numerator,
        500_000
    );
    let Some(PolicySpecifier::Header(h)) = &a.hash_policy[0].policy_specifier else {
        panic!("no header hash: {:?}", a.hash_policy);
    };
    assert_eq!(h.header_name, "x-user");
    let added: Vec<(&str, &str, i32)> = r
        .request_headers_to_add
        .iter()
        .map(|o| {
            let h = o.header.as_ref().unwrap();
            (h.key.as_str(), h.value.as_str(), o.append_action)
        })
        .collect();
    assert_eq!(
        added,
        [
            (
                "x-a",
                "1",
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32
            ),
            ("x-b", "2", HeaderAppendAction::AppendIfExistsOrAdd as i32),
        ]
    );
    assert_eq!(r.request_headers_to_remove, ["x-c"]);
    // The single destination's own edits go on the route.
    assert_eq!(
        r.response_headers_to_add[0].header.as_ref().unwrap().key,
        "x-from"
    );
    // sourceLabels + sourceNamespace: the reviews pods of tutorial.
    let ips = &r.metadata.as_ref().unwrap().filter_metadata[MESH_METADATA].fields["source_ips"];
    assert_eq!(
        ips,
        &pb::list_value(
            ["10.244.1.1", "10.244.1.2", "10.244.1.3"]
                .into_iter()
                .map(pb::string_value)
                .collect()
        )
    );
}

#[test]
fn zero_weights_dropped_and_zero_attempts_disable_retries() {
    let t = translated();
    let r = &order(&t).routes[3];
    let Some(Action::Route(a)) = &r.action else {
        panic!("no route action");
    };
    assert_eq!(
        a.cluster_specifier,
        Some(ClusterSpecifier::Cluster(
            "outbound|8080|b|order.tutorial.svc.cluster.local".into()
        ))
    );
    assert_eq!(a.retry_policy, None);
}

#[test]
fn retry_on_status_codes() {
    let p = retry_policy(Some(&Retries {
        attempts: 4,
        per_try_timeout: None,
        retry_on: Some("gateway-error,503,504".into()),
        retry_remote_localities: None,
    }))
    .unwrap();
    assert_eq!(p.retry_on, "gateway-error,retriable-status-codes");
    assert_eq!(p.retriable_status_codes, [503, 504]);
    assert_eq!(p.num_retries.unwrap().value, 4);
}
