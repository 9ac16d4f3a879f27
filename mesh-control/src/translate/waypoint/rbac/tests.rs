use envoy_types::pb::envoy::{
    config::{
        listener::v3::filter,
        rbac::v3::{permission::Rule, principal::Identifier, Permission, Principal},
        route::v3::header_matcher::HeaderMatchSpecifier,
    },
    extensions::filters::{
        http::rbac::v3::RbacPerRoute, network::http_connection_manager::v3::HttpConnectionManager,
    },
    r#type::matcher::v3::{path_matcher, string_matcher::MatchPattern, StringMatcher},
};
use prost::Message as _;

use super::*;
use crate::{
    source::{load_files, SourceConfig},
    translate::waypoint::{tests::base_yaml, translate},
};

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-get, namespace: tutorial}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/tutorial/sa/order"], namespaces: ["default"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/api/*", "*.png", "/exact"], ports: ["9080"]}}]
    when: [{key: "request.headers[x-user]", values: ["alice"]}]
  - from: [{source: {requestPrincipals: ["issuer/subject"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-outsiders, namespace: default}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: wp}]
  action: DENY
  rules:
  - from: [{source: {ipBlocks: ["10.0.0.0/8"], notNamespaces: ["default"]}}]
    to: [{operation: {notMethods: ["POST"], hosts: ["ratings*"]}}]
"#;

fn state() -> MeshState {
    load_files(
        &[
            ("00-base.yaml".into(), base_yaml()),
            ("10-policies.yaml".into(), POLICIES.into()),
        ],
        &SourceConfig::default(),
    )
    .unwrap_or_else(|p| panic!("{p:?}"))
    .state
}

fn sm(m: &StringMatcher) -> String {
    match m.match_pattern.as_ref().unwrap() {
        MatchPattern::Exact(s) => format!("={s}"),
        MatchPattern::Prefix(s) => format!("^={s}"),
        MatchPattern::Suffix(s) => format!("$={s}"),
        MatchPattern::SafeRegex(r) => format!("~={}", r.regex),
        MatchPattern::Contains(s) => format!("*={s}"),
        other => format!("{other:?}"),
    }
}

fn header(h: &envoy_types::pb::envoy::config::route::v3::HeaderMatcher) -> String {
    match h.header_match_specifier.as_ref().unwrap() {
        HeaderMatchSpecifier::StringMatch(m) => format!("{}{}", h.name, sm(m)),
        HeaderMatchSpecifier::PresentMatch(_) => format!("{} present", h.name),
        other => format!("{other:?}"),
    }
}

fn principal(p: &Principal) -> String {
    let list = |ids: &[Principal]| ids.iter().map(principal).collect::<Vec<_>>().join(", ");
    match p.identifier.as_ref().unwrap() {
        Identifier::AndIds(s) => format!("and({})", list(&s.ids)),
        Identifier::OrIds(s) => format!("or({})", list(&s.ids)),
        Identifier::NotId(p) => format!("not({})", principal(p)),
        Identifier::Any(_) => "any".into(),
        Identifier::Authenticated(a) => {
            format!("principal{}", sm(a.principal_name.as_ref().unwrap()))
        }
        Identifier::DirectRemoteIp(c) => {
            format!("ip={}/{}", c.address_prefix, c.prefix_len.unwrap().value)
        }
        Identifier::Header(h) => header(h),
        other => format!("{other:?}"),
    }
}

fn permission(p: &Permission) -> String {
    let list = |r: &[Permission]| r.iter().map(permission).collect::<Vec<_>>().join(", ");
    match p.rule.as_ref().unwrap() {
        Rule::AndRules(s) => format!("and({})", list(&s.rules)),
        Rule::OrRules(s) => format!("or({})", list(&s.rules)),
        Rule::NotRule(p) => format!("not({})", permission(p)),
        Rule::Any(_) => "any".into(),
        Rule::Header(h) => header(h),
        Rule::UrlPath(p) => {
            let Some(path_matcher::Rule::Path(m)) = &p.rule else {
                panic!()
            };
            format!("path{}", sm(m))
        }
        Rule::DestinationPort(p) => format!("port={p}"),
        other => format!("{other:?}"),
    }
}

fn per_route(
    t: &crate::translate::waypoint::Translation,
    ns: &str,
    svc: &str,
    filter: &str,
) -> Option<RbacRules> {
    let vh = t.routes[&format!("waypoint/{ns}/wp")]
        .virtual_hosts
        .iter()
        .find(|v| v.name.starts_with(&format!("{svc}.{ns}.")))
        .unwrap();
    let any = vh.typed_per_filter_config.get(filter)?;
    assert_eq!(any.type_url, RBAC_PER_ROUTE_TYPE);
    RbacPerRoute::decode(any.value.as_slice())
        .unwrap()
        .rbac
        .unwrap()
        .rules
}

fn listener_filters(t: &crate::translate::waypoint::Translation, ns: &str) -> Vec<String> {
    let l = &t.listeners[&format!("waypoint/{ns}/wp")];
    let Some(filter::ConfigType::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
    else {
        panic!("no hcm");
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    hcm.http_filters.into_iter().map(|f| f.name).collect()
}

#[test]
fn service_target_allow_policy_on_its_virtual_host() {
    let t = translate(&state(), "istio-system");
    assert_eq!(
        listener_filters(&t, "tutorial"),
        [
            "envoy.filters.http.fault",
            "envoy.filters.http.rbac.allow",
            "envoy.filters.http.router"
        ]
    );
    let rules = per_route(&t, "tutorial", "reviews", "envoy.filters.http.rbac.allow").unwrap();
    assert_eq!(rules.action, Action::Allow as i32);
    // The requestPrincipals rule cannot be checked: dropped (fail closed).
    assert_eq!(
        rules.policies.keys().collect::<Vec<_>>(),
        ["ns[tutorial]-policy[reviews-get]-rule[0]"]
    );
    let p = &rules.policies["ns[tutorial]-policy[reviews-get]-rule[0]"];
    assert_eq!(
        principal(&p.principals[0]),
        "and(or(and(or(principal=spiffe://cluster.local/ns/tutorial/sa/order), or(principal~=spiffe://[^/]+/ns/default/sa/.*))), or(x-user=alice))"
    );
    assert_eq!(
        permission(&p.permissions[0]),
        "or(and(or(:method=GET), or(path^=/api/, path$=.png, path=/exact), or(port=9080)))"
    );
    // Other services of the waypoint are not covered.
    assert!(per_route(&t, "tutorial", "order", "envoy.filters.http.rbac.allow").is_none());
}

#[test]
fn gateway_target_deny_policy_covers_every_bound_service() {
    let t = translate(&state(), "istio-system");
    assert_eq!(
        listener_filters(&t, "default"),
        [
            "envoy.filters.http.fault",
            "envoy.filters.http.rbac.deny",
            "envoy.filters.http.router"
        ]
    );
    for svc in ["reviews", "ratings", "httpbin", "productpage"] {
        let rules = per_route(&t, "default", svc, "envoy.filters.http.rbac.deny").unwrap();
        assert_eq!(rules.action, Action::Deny as i32);
        let p = &rules.policies["ns[default]-policy[no-outsiders]-rule[0]"];
        assert_eq!(
            principal(&p.principals[0]),
            "or(and(not(or(principal~=spiffe://[^/]+/ns/default/sa/.*)), or(ip=10.0.0.0/8)))"
        );
        assert_eq!(
            permission(&p.permissions[0]),
            "or(and(or(:authority^=ratings), not(or(:method=POST))))"
        );
    }
}

#[test]
fn waypoint_policies_are_not_sent_to_the_agents() {
    let state = state();
    let l4 = crate::translate::authorization::translate(&state, "istio-system");
    assert!(l4.authorizations.is_empty(), "{:?}", l4.authorizations);
    assert!(
        l4.findings.is_empty(),
        "{:?}",
        l4.findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    let reviews = &state.workloads["Kubernetes//Pod/tutorial/reviews-v1"];
    assert!(crate::translate::authorization::policies_for_workload(
        &state,
        reviews,
        "istio-system"
    )
    .is_empty());
}

#[test]
fn without_waypoint_the_service_policy_stays_with_the_agents() {
    let opt_out = r#"
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: tutorial, labels: {istio.io/use-waypoint: none}}
spec: {selector: {app: order}, clusterIP: 10.96.99.1, ports: [{port: 80}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: extra-l4, namespace: tutorial}
spec:
  targetRefs: [{kind: Service, group: "", name: extra}]
  action: DENY
  rules: [{from: [{source: {namespaces: ["default"]}}]}]
"#;
    let state = load_files(
        &[
            ("00-base.yaml".into(), base_yaml()),
            ("10-extra.yaml".into(), opt_out.into()),
        ],
        &SourceConfig::default(),
    )
    .unwrap()
    .state;
    let l4 = crate::translate::authorization::translate(&state, "istio-system");
    assert_eq!(
        l4.authorizations
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["tutorial/extra-l4"]
    );
    let t = translate(&state, "istio-system");
    assert_eq!(listener_filters(&t, "tutorial").len(), 2);
}

#[test]
fn root_namespace_gateway_class_policy_covers_every_waypoint() {
    let policy = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: istio-system}
spec:
  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
"#;
    let state = load_files(
        &[
            ("00-base.yaml".into(), base_yaml()),
            ("10-policy.yaml".into(), policy.into()),
        ],
        &SourceConfig::default(),
    )
    .unwrap()
    .state;
    let t = translate(&state, "istio-system");
    for (ns, svc) in [("tutorial", "order"), ("default", "httpbin")] {
        let rules = per_route(&t, ns, svc, "envoy.filters.http.rbac.deny").unwrap();
        assert_eq!(
            permission(
                &rules.policies["ns[istio-system]-policy[no-delete]-rule[0]"].permissions[0]
            ),
            "or(or(:method=DELETE))"
        );
    }
    let l4 = crate::translate::authorization::translate(&state, "istio-system");
    assert!(l4.authorizations.is_empty() && l4.findings.is_empty());
    // With another root namespace the class names nothing.
    let elsewhere = translate(&state, "mesh-root");
    assert_eq!(listener_filters(&elsewhere, "tutorial").len(), 2);
}
