use std::collections::BTreeMap;

use super::*;
use crate::source::fields::parse_block;
use crate::{
    model::authz::AuthzRule,
    source::{load_files, SourceConfig},
};

fn load(yaml: &str) -> Result<Vec<AuthorizationPolicy>, Vec<String>> {
    load_files(
        &[("authz.yaml".to_string(), yaml.to_string())],
        &SourceConfig::default(),
    )
    .map(|s| s.state.authorization_policies)
    .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

fn policy(spec: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: shop\nspec:\n{spec}")
}

fn errors(spec: &str) -> Vec<String> {
    load(&policy(spec)).expect_err("must be rejected")
}

#[test]
fn parses_every_field() {
    let yaml = r#"
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: full
  namespace: shop
  annotations: {istio.io/dry-run: "true", other: x}
spec:
  selector:
    matchLabels: {app: web}
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/a/sa/b", "*"]
        notPrincipals: ["spiffe://cluster.local/ns/x/sa/y"]
        namespaces: [a]
        notNamespaces: ["kube-*"]
        ipBlocks: ["10.0.0.0/8", "10.1.2.3", "fd00::/64"]
        notIpBlocks: ["::1"]
        requestPrincipals: ["iss/sub"]
        notRequestPrincipals: ["*"]
        remoteIpBlocks: ["1.2.3.4"]
        notRemoteIpBlocks: ["5.6.7.0/24"]
        serviceAccounts: ["a/b"]
        notServiceAccounts: ["c"]
        futureField: [x]
    to:
    - operation:
        ports: ["8080", 9090]
        notPorts: ["22"]
        hosts: [a.com]
        notHosts: [b.com]
        methods: [GET]
        notMethods: [POST]
        paths: ["/x"]
        notPaths: ["/y*"]
    when:
    - key: source.ip
      values: ["192.168.0.0/16"]
      notValues: ["192.168.1.1"]
    - key: destination.port
      values: ["443"]
    - key: request.headers[x-token]
      values: [abc]
  - {}
"#;
    let policies = load(yaml).unwrap();
    let p = &policies[0];
    assert_eq!(p.resource(), "AuthorizationPolicy shop/full");
    assert_eq!(p.file, "authz.yaml");
    assert!(p.dry_run);
    assert_eq!(
        p.selector,
        Some(BTreeMap::from([("app".to_string(), "web".to_string())]))
    );
    assert_eq!(p.action, AuthzAction::Deny);
    assert_eq!(p.rules.len(), 2);
    assert_eq!(p.rules[1], AuthzRule::default());
    let source = &p.rules[0].from.as_ref().unwrap()[0];
    assert_eq!(source.principals, ["cluster.local/ns/a/sa/b", "*"]);
    assert_eq!(source.not_principals, ["spiffe://cluster.local/ns/x/sa/y"]);
    assert_eq!(source.namespaces, ["a"]);
    assert_eq!(source.not_namespaces, ["kube-*"]);
    let shown: Vec<String> = source.ip_blocks.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.0/8", "10.1.2.3/32", "fd00::/64"]);
    assert_eq!(source.not_ip_blocks[0].to_string(), "::1/128");
    assert_eq!(source.request_principals, ["iss/sub"]);
    assert_eq!(source.not_request_principals, ["*"]);
    assert_eq!(source.remote_ip_blocks[0].to_string(), "1.2.3.4/32");
    assert_eq!(source.not_remote_ip_blocks[0].to_string(), "5.6.7.0/24");
    assert_eq!(source.service_accounts, ["a/b"]);
    assert_eq!(source.not_service_accounts, ["c"]);
    assert_eq!(source.unknown, ["futureField"]);
    let op = &p.rules[0].to.as_ref().unwrap()[0];
    assert_eq!(op.ports, [8080, 9090]);
    assert_eq!(op.not_ports, [22]);
    assert_eq!(
        (&op.hosts, &op.not_hosts, &op.methods, &op.not_methods),
        (
            &vec!["a.com".to_string()],
            &vec!["b.com".to_string()],
            &vec!["GET".to_string()],
            &vec!["POST".to_string()]
        )
    );
    assert_eq!(
        (&op.paths[0], &op.not_paths[0]),
        (&"/x".into(), &"/y*".into())
    );
    let when = &p.rules[0].when;
    assert_eq!(
        when[0],
        Condition::L4 {
            key: "source.ip".into(),
            values: L4Values::SourceIp(vec![parse_block("192.168.0.0/16").unwrap()]),
            not_values: L4Values::SourceIp(vec![parse_block("192.168.1.1/32").unwrap()]),
        }
    );
    assert_eq!(
        when[1],
        Condition::L4 {
            key: "destination.port".into(),
            values: L4Values::DestinationPort(vec![443]),
            not_values: L4Values::DestinationPort(vec![]),
        }
    );
    assert_eq!(
        when[2],
        Condition::L7 {
            key: "request.headers[x-token]".into(),
            values: vec!["abc".into()],
            not_values: vec![],
        }
    );
}

#[test]
fn defaults_and_target_refs() {
    let yaml = format!(
        "{}---\n{}",
        policy("  targetRefs:\n  - {kind: Service, group: \"\", name: web}\n  - {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: q, namespace: shop}\nspec:\n  action: CUSTOM\n  provider: {name: ext-authz}\n  targetRef: {kind: Service, name: web}\n"
    );
    let policies = load(&yaml).unwrap();
    let p = &policies[0];
    assert_eq!(p.action, AuthzAction::Allow);
    assert!(!p.dry_run && p.selector.is_none() && p.rules.is_empty());
    assert_eq!(
        p.target_refs,
        [
            TargetRef {
                group: String::new(),
                kind: "Service".into(),
                name: "web".into(),
                field: "spec.targetRefs[0]".into()
            },
            TargetRef {
                group: "gateway.networking.k8s.io".into(),
                kind: "Gateway".into(),
                name: "gw".into(),
                field: "spec.targetRefs[1]".into()
            }
        ]
    );
    assert_eq!(
        policies[1].action,
        AuthzAction::Custom {
            provider: "ext-authz".into()
        }
    );
    assert_eq!(policies[1].target_refs[0].field, "spec.targetRef");
}

#[test]
fn invalid_policies_name_file_resource_and_field() {
    let at = |rest: &str| format!("authz.yaml: AuthorizationPolicy shop/p: {rest}");
    assert_eq!(
        errors("  action: PERMIT\n"),
        [at(
            "spec.action: \"PERMIT\" is not an action (ALLOW, DENY, AUDIT or CUSTOM)"
        )]
    );
    assert_eq!(
        errors("  rules:\n  - from:\n    - source: {principals: [a]}\n    - source:\n        ipBlocks: [\"10.0.0.0/8\", \"::1\", \"10.0.0.300/8\", \"10.0.0.0/33\"]\n"),
        [
            at("spec.rules[0].from[1].source.ipBlocks[2]: \"10.0.0.300/8\" is not an IP address or CIDR: \"10.0.0.300\" is not an IP address"),
            at("spec.rules[0].from[1].source.ipBlocks[3]: \"10.0.0.0/33\" is not an IP address or CIDR: prefix length \"33\" is not 0-32"),
        ]
    );
    assert_eq!(
        errors("  rules:\n  - to:\n    - operation: {ports: [\"0\", \"70000\", http, 80, 65536]}\n"),
        [
            at("spec.rules[0].to[0].operation.ports[0]: 0 is not a port number (1-65535)"),
            at("spec.rules[0].to[0].operation.ports[1]: 70000 is not a port number (1-65535)"),
            at("spec.rules[0].to[0].operation.ports[2]: \"http\" is not a port number (1-65535); named ports are not allowed here"),
            at("spec.rules[0].to[0].operation.ports[4]: 65536 is not a port number (1-65535)"),
        ]
    );
    assert_eq!(
        errors("  rules:\n  - when:\n    - values: [a]\n    - key: source.ip\n      values: [nope]\n    - key: destination.port\n      notValues: [\"x\"]\n    - key: request.colour\n      values: [red]\n    - key: source.namespace\n"),
        [
            at("spec.rules[0].when[0].key: required field is missing"),
            at("spec.rules[0].when[1].values[0]: \"nope\" is not an IP address or CIDR: \"nope\" is not an IP address"),
            at("spec.rules[0].when[2].notValues[0]: \"x\" is not a port number (1-65535); named ports are not allowed here"),
            format!("{}{}", at("spec.rules[0].when[3].key: \"request.colour\" is not an attribute Istio knows (L4: "), "source.ip, source.namespace, source.principal, source.serviceAccount, destination.ip, destination.port; L7: remote.ip, request.auth.principal, request.auth.audiences, request.auth.presenter, connection.sni, source.user, request.headers[<name>], request.auth.claims[<name>], experimental.envoy.filters.*)"),
            at("spec.rules[0].when[4]: condition on \"source.namespace\" needs values or notValues"),
        ]
    );
    assert_eq!(
        errors("  selector: {matchLabels: {app: web}}\n  targetRefs: [{kind: Service, name: web}]\n"),
        [at("spec.targetRefs: only one of selector and targetRef(s) may be set (a policy applies either to the pods a selector picks or to the named objects)")]
    );
    assert_eq!(
        errors("  targetRef: {kind: Deployment, group: apps, name: web}\n"),
        [at("spec.targetRef.kind: apps/Deployment cannot be targeted (Service, gateway.networking.k8s.io Gateway or GatewayClass, networking.istio.io ServiceEntry)")]
    );
    assert_eq!(
        errors("  targetRefs: [{kind: Service, name: web, namespace: other}, {name: x}]\n"),
        [
            at("spec.targetRefs[0].namespace: \"other\": a policy can only target objects of its own namespace (\"shop\")"),
            at("spec.targetRefs[1].kind: required field is missing"),
        ]
    );
    assert_eq!(
        errors("  action: CUSTOM\n"),
        [at("spec.provider.name: required field is missing")]
    );
    assert_eq!(
        errors("  action: DENY\n  provider: {name: x}\n"),
        [at(
            "spec.provider: a provider is only used with action CUSTOM, not DENY"
        )]
    );
    assert_eq!(
        errors(
            "  rules:\n  - from: []\n  - to:\n    - operation: {}\n  - from:\n    - {}\n  - 7\n"
        ),
        [
            at("spec.rules[0].from: must not be empty when present"),
            at("spec.rules[1].to[0].operation: must not be empty"),
            at("spec.rules[2].from[0].source: required field is missing"),
            at("spec.rules[3]: expected a mapping, found a number"),
        ]
    );
    assert_eq!(
        errors("  rules:\n  - from:\n    - source: {principals: [\"\", 5]}\n"),
        [
            at("spec.rules[0].from[0].source.principals[0]: must not be empty"),
            at("spec.rules[0].from[0].source.principals[1]: expected a string, found 5"),
        ]
    );
    let bad_dry_run = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: shop\n  annotations: {istio.io/dry-run: maybe}\n";
    assert_eq!(
        load(bad_dry_run).unwrap_err(),
        [at(
            "metadata.annotations[\"istio.io/dry-run\"]: \"maybe\" is not \"true\" or \"false\""
        )]
    );
    let alpha = "apiVersion: security.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\n";
    assert_eq!(
        load(alpha).unwrap_err(),
        [at("apiVersion: security.istio.io/v1alpha1 is not an AuthorizationPolicy version (use security.istio.io/v1 or v1beta1)")]
    );
}

#[test]
fn one_bad_policy_rejects_the_whole_load() {
    let yaml = format!(
        "{}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: good, namespace: shop}}\nspec: {{action: DENY}}\n",
        policy("  action: nope\n")
    );
    assert_eq!(load(&yaml).unwrap_err().len(), 1);
}

#[test]
fn valid_istio_yaml_is_accepted() {
    // From Istio's documentation: allow-nothing, deny-all, dry-run, L7 keys.
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: foo}
spec:
  rules:
  - {}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
  annotations:
    "istio.io/dry-run": "false"
spec:
  selector:
    matchLabels:
      app: httpbin
      version: v1
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    - source:
        namespaces: ["test"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/info*"]
    - operation:
        methods: ["POST"]
        paths: ["/data"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
    - key: experimental.envoy.filters.network.mysql_proxy[db.table]
      values: ["[update]"]
    - key: remote.ip
      values: ["10.1.2.3/32"]
"#;
    let policies = load(yaml).unwrap();
    assert_eq!(policies.len(), 3);
    assert!(policies[0].rules.is_empty());
    assert_eq!(policies[1].rules, [AuthzRule::default()]);
    assert_eq!(policies[2].rules[0].when.len(), 3);
}

/// A namespace pattern becomes a principal regex at the waypoint; one over
/// the regex program-size budget is rejected here, naming its field.
#[test]
fn namespace_patterns_over_the_regex_budget_are_rejected() {
    load(&policy(
        "  rules:\n  - from:\n    - source: {namespaces: [\"prod-*\", \"*-web\"]}\n",
    ))
    .unwrap();
    // Far beyond what a namespace name can be, and beyond the budget as
    // the principal regex it becomes.
    let wild = format!("*{}", "a*".repeat(20_000));
    let problems = errors(&format!(
        "  rules:\n  - from:\n    - source: {{notNamespaces: [ok, \"{wild}\"]}}\n"
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!(
            "authz.yaml: AuthorizationPolicy shop/p: spec.rules[0].from[0].source.notNamespaces[1]: {wild:?} is over the regex program-size budget"
        )),
        "{problems:?}"
    );
}
