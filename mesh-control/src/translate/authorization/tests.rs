use mesh_xds::proto::istio_security::{
    string_match::MatchType, Address, Clause, Match, Rule, StringMatch,
};

use super::*;
use crate::{
    source::{load_files, Snapshot, SourceConfig},
    translate::workload::{self, ConvertOptions},
};

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: blog, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, serviceAccountName: web}
status: {podIP: 10.244.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: shop, labels: {app: db}}
spec: {nodeName: node-1}
status: {podIP: 10.244.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: blog, labels: {app: web}}
spec: {nodeName: node-1}
status: {podIP: 10.244.1.3}
---
apiVersion: v1
kind: Pod
metadata: {name: web-old, namespace: legacy, labels: {app: old}}
spec: {nodeName: node-1}
status: {podIP: 10.244.1.4}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, clusterIP: 10.96.0.10, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"#;

fn load(policies: &str) -> Snapshot {
    let files = [
        ("00-base.yaml".to_string(), BASE.to_string()),
        ("10-authz.yaml".to_string(), policies.to_string()),
    ];
    load_files(&files, &SourceConfig::default()).unwrap_or_else(|p| panic!("{p:#?}"))
}

fn policy(ns: &str, name: &str, spec: &str) -> String {
    format!("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}")
}

fn translated(policies: &str) -> (BTreeMap<String, Authorization>, Vec<Finding>) {
    let snapshot = load(policies);
    let t = translate(&snapshot.state, "istio-system");
    assert_eq!(t.findings, snapshot.findings);
    (t.authorizations.into_iter().collect(), t.findings)
}

/// `authorization_policies` of every workload, as served.
fn listed(policies: &str) -> BTreeMap<String, Vec<String>> {
    let snapshot = load(policies);
    let opts = ConvertOptions::default();
    snapshot
        .state
        .workloads
        .values()
        .map(|w| {
            let served = workload::workload_address(&snapshot.state, w, &opts);
            (
                format!("{}/{}", w.namespace, w.name),
                served.authorization_policies,
            )
        })
        .collect()
}

fn exact(s: &str) -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Exact(s.into())),
    }
}

fn sm(t: MatchType) -> StringMatch {
    StringMatch {
        match_type: Some(t),
    }
}

fn cidr(bytes: &[u8], length: u32) -> Address {
    Address {
        address: bytes.to_vec(),
        length,
    }
}

fn codes_of(findings: &[Finding]) -> Vec<(&'static str, String, Option<String>)> {
    findings
        .iter()
        .map(|f| (f.code, f.resource.clone(), f.field.clone()))
        .collect()
}

const STRICT: &str = "istio-system/istio_converted_static_strict";

#[test]
fn scopes_and_the_workloads_that_list_policies() {
    let policies = [
        policy("shop", "ns-wide", "  action: DENY\n"),
        policy("istio-system", "mesh-wide", "  action: DENY\n"),
        policy(
            "shop",
            "by-label",
            "  selector: {matchLabels: {app: web}}\n",
        ),
        policy(
            "istio-system",
            "root-label",
            "  selector: {matchLabels: {app: web}}\n",
        ),
        policy(
            "shop",
            "by-service",
            "  targetRefs: [{kind: Service, name: web}]\n",
        ),
        policy("shop", "all-pods", "  selector: {}\n"),
    ]
    .concat();
    let (authz, findings) = translated(&policies);
    assert!(findings.is_empty(), "{findings:#?}");
    let scopes: Vec<(&str, i32)> = authz.iter().map(|(k, a)| (k.as_str(), a.scope)).collect();
    assert_eq!(
        scopes,
        [
            ("istio-system/mesh-wide", Scope::Global as i32),
            ("istio-system/root-label", Scope::WorkloadSelector as i32),
            ("shop/all-pods", Scope::WorkloadSelector as i32),
            ("shop/by-label", Scope::WorkloadSelector as i32),
            ("shop/by-service", Scope::WorkloadSelector as i32),
            ("shop/ns-wide", Scope::Namespace as i32),
        ]
    );
    assert!(authz.values().all(|a| a.rules.is_empty()));
    let list = listed(&policies);
    let names = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        list["shop/web-1"],
        names(&[
            STRICT,
            "istio-system/root-label",
            "shop/all-pods",
            "shop/by-label",
            "shop/by-service"
        ])
    );
    assert_eq!(list["shop/db-1"], names(&[STRICT, "shop/all-pods"]));
    assert_eq!(
        list["blog/web-2"],
        names(&[STRICT, "istio-system/root-label"])
    );
    // Outside the mesh: nothing (and no STRICT either, as before).
    assert!(list["legacy/web-old"].is_empty());

    // The static STRICT policy is still served beside the user policies.
    let snapshot = load(&policies);
    let served = workload::authorizations(&snapshot.state, &ConvertOptions::default());
    let served: Vec<&str> = served.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        served,
        [
            STRICT,
            "istio-system/mesh-wide",
            "istio-system/root-label",
            "shop/all-pods",
            "shop/by-label",
            "shop/by-service",
            "shop/ns-wide",
        ]
    );
}

#[test]
fn actions_dry_run_and_custom() {
    let policies = [
        policy("shop", "allow", "  action: ALLOW\n"),
        policy("shop", "default", "  rules: [{}]\n"),
        policy("shop", "deny", "  action: DENY\n"),
        policy("shop", "audit", "  action: AUDIT\n"),
        policy(
            "shop",
            "custom",
            "  action: CUSTOM\n  provider: {name: opa}\n  selector: {matchLabels: {app: web}}\n",
        ),
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: dry\n  namespace: shop\n  annotations: {istio.io/dry-run: \"true\"}\nspec: {action: DENY}\n".into(),
    ]
    .concat();
    let (authz, findings) = translated(&policies);
    let actions: Vec<(&str, i32, bool)> = authz
        .iter()
        .map(|(k, a)| (k.as_str(), a.action, a.dry_run))
        .collect();
    assert_eq!(
        actions,
        [
            ("shop/allow", 0, false),
            ("shop/audit", 2, false),
            ("shop/default", 0, false),
            ("shop/deny", 1, false),
            ("shop/dry", 1, true),
        ]
    );
    assert_eq!(Action::Audit as i32, 2);
    // An empty rule matches everything; no rules matches nothing.
    assert_eq!(authz["shop/default"].rules, [Rule { clauses: vec![] }]);
    assert!(authz["shop/allow"].rules.is_empty());
    assert_eq!(
        codes_of(&findings),
        [(
            "MESH0201",
            "AuthorizationPolicy shop/custom".into(),
            Some("spec.action".into())
        )]
    );
    assert!(findings[0]
        .message
        .contains("CUSTOM (provider \"opa\") needs an external authorizer"));
    // Not listed either.
    assert_eq!(listed(&policies)["shop/web-1"], [STRICT]);
}

#[test]
fn every_l4_field_becomes_clauses() {
    let spec = r#"  action: DENY
  rules:
  - from:
    - source:
        principals: ["spiffe://cluster.local/ns/a/sa/b", "*", "cluster.local/ns/a/*", "*/sa/admin"]
        notPrincipals: ["cluster.local/ns/x/sa/y"]
    - source:
        namespaces: ["team-*"]
        notNamespaces: ["kube-system"]
        ipBlocks: ["10.1.0.0/16", "10.2.3.4", "fd00:1::/48"]
        notIpBlocks: ["::1"]
    - source:
        serviceAccounts: ["a/b", "c"]
        notServiceAccounts: ["x/y"]
    to:
    - operation: {ports: ["80", "443"], notPorts: ["8443"]}
    - operation: {notPorts: ["22"]}
    when:
    - {key: source.ip, values: ["192.168.0.0/24"], notValues: ["192.168.0.7"]}
    - {key: source.namespace, values: [prod], notValues: ["*-test"]}
    - {key: source.principal, values: ["spiffe://td/ns/n/sa/s"], notValues: ["*"]}
    - {key: destination.ip, values: ["10.96.0.0/12"], notValues: ["fd00::5"]}
    - {key: destination.port, values: ["9080"], notValues: ["9090"]}
    - {key: source.serviceAccount, values: ["n/s"]}
"#;
    let (authz, findings) = translated(&policy("shop", "full", spec));
    assert!(findings.is_empty(), "{findings:#?}");
    let mut v6 = [0u8; 16];
    v6[..4].copy_from_slice(&[0xfd, 0, 0, 1]);
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    let mut fd5 = [0u8; 16];
    fd5[..2].copy_from_slice(&[0xfd, 0]);
    fd5[15] = 5;
    let one = |m: Match| Clause { matches: vec![m] };
    let expected = Rule {
        clauses: vec![
            Clause {
                matches: vec![
                    Match {
                        principals: vec![
                            exact("cluster.local/ns/a/sa/b"),
                            sm(MatchType::Presence(mesh_xds::proto::wkt::Empty {})),
                            sm(MatchType::Prefix("cluster.local/ns/a/".into())),
                            sm(MatchType::Suffix("/sa/admin".into())),
                        ],
                        not_principals: vec![exact("cluster.local/ns/x/sa/y")],
                        ..Match::default()
                    },
                    Match {
                        namespaces: vec![sm(MatchType::Prefix("team-".into()))],
                        not_namespaces: vec![exact("kube-system")],
                        source_ips: vec![
                            cidr(&[10, 1, 0, 0], 16),
                            cidr(&[10, 2, 3, 4], 32),
                            cidr(&v6, 48),
                        ],
                        not_source_ips: vec![cidr(&loopback, 128)],
                        ..Match::default()
                    },
                    Match {
                        principals: vec![
                            sm(MatchType::Suffix("/ns/a/sa/b".into())),
                            sm(MatchType::Suffix("/ns/shop/sa/c".into())),
                        ],
                        not_principals: vec![sm(MatchType::Suffix("/ns/x/sa/y".into()))],
                        ..Match::default()
                    },
                ],
            },
            Clause {
                matches: vec![
                    Match {
                        destination_ports: vec![80, 443],
                        not_destination_ports: vec![8443],
                        ..Match::default()
                    },
                    Match {
                        not_destination_ports: vec![22],
                        ..Match::default()
                    },
                ],
            },
            one(Match {
                source_ips: vec![cidr(&[192, 168, 0, 0], 24)],
                not_source_ips: vec![cidr(&[192, 168, 0, 7], 32)],
                ..Match::default()
            }),
            one(Match {
                namespaces: vec![exact("prod")],
                not_namespaces: vec![sm(MatchType::Suffix("-test".into()))],
                ..Match::default()
            }),
            one(Match {
                principals: vec![exact("td/ns/n/sa/s")],
                not_principals: vec![sm(MatchType::Presence(mesh_xds::proto::wkt::Empty {}))],
                ..Match::default()
            }),
            one(Match {
                destination_ips: vec![cidr(&[10, 96, 0, 0], 12)],
                not_destination_ips: vec![cidr(&fd5, 128)],
                ..Match::default()
            }),
            one(Match {
                destination_ports: vec![9080],
                not_destination_ports: vec![9090],
                ..Match::default()
            }),
            one(Match {
                principals: vec![sm(MatchType::Suffix("/ns/n/sa/s".into()))],
                ..Match::default()
            }),
        ],
    };
    assert_eq!(authz["shop/full"].rules, [expected]);
}

#[test]
fn l7_attributes_fail_safe() {
    let rules = r#"  rules:
  - from:
    - source: {principals: [cluster.local/ns/shop/sa/web], requestPrincipals: ["iss/*"]}
    to:
    - operation: {ports: ["80"], methods: [GET], paths: ["/admin*"]}
    when:
    - {key: "request.headers[x-user]", values: [bob]}
    - {key: destination.port, values: ["80"]}
  - from:
    - source: {namespaces: [shop]}
"#;
    let allow = policy("shop", "allow", rules);
    let deny = policy("shop", "deny", &format!("  action: DENY\n{rules}"));
    let (authz, findings) = translated(&format!("{allow}{deny}"));
    let ns_rule = Rule {
        clauses: vec![Clause {
            matches: vec![Match {
                namespaces: vec![exact("shop")],
                ..Match::default()
            }],
        }],
    };
    // ALLOW: the L7 rule is dropped, the L4 one kept.
    assert_eq!(authz["shop/allow"].rules, std::slice::from_ref(&ns_rule));
    // DENY: the L7 attributes are ignored, the rest kept.
    let l4_part = Rule {
        clauses: vec![
            Clause {
                matches: vec![Match {
                    principals: vec![exact("cluster.local/ns/shop/sa/web")],
                    ..Match::default()
                }],
            },
            Clause {
                matches: vec![Match {
                    destination_ports: vec![80],
                    ..Match::default()
                }],
            },
            Clause {
                matches: vec![Match {
                    destination_ports: vec![80],
                    ..Match::default()
                }],
            },
        ],
    };
    assert_eq!(authz["shop/deny"].rules, [l4_part, ns_rule]);
    assert_eq!(
        codes_of(&findings),
        [
            (
                "MESH0202",
                "AuthorizationPolicy shop/allow".into(),
                Some("spec.rules[0].from[0].source.requestPrincipals".into())
            ),
            (
                "MESH0203",
                "AuthorizationPolicy shop/deny".into(),
                Some("spec.rules[0].from[0].source.requestPrincipals".into())
            ),
        ]
    );
    assert!(
        findings[0].message.contains(
            "(spec.rules[0].from[0].source.requestPrincipals, spec.rules[0].to[0].operation.methods, spec.rules[0].to[0].operation.paths, spec.rules[0].when[0].key \"request.headers[x-user]\")"
        ),
        "{}",
        findings[0].message
    );
    assert!(findings[0].message.contains("this ALLOW rule is dropped"));
    assert!(findings[1].message.contains("they are ignored"));
}

#[test]
fn unknown_fields_and_principals_with_service_accounts_are_treated_as_l7() {
    let spec = "  rules:\n  - from:\n    - source: {principals: [a/ns/b/sa/c], serviceAccounts: [b/c]}\n  - from:\n    - source: {namespaces: [x], futureThing: [y]}\n";
    let (authz, findings) = translated(&policy("shop", "p", spec));
    assert!(authz["shop/p"].rules.is_empty());
    let fields: Vec<Option<String>> = findings.iter().map(|f| f.field.clone()).collect();
    assert_eq!(
        fields,
        [
            Some("spec.rules[0].from[0].source.serviceAccounts".into()),
            Some("spec.rules[1].from[0].source.futureThing".into()),
        ]
    );
}

#[test]
fn selectors_and_targets_that_reach_nothing_are_findings() {
    let policies = [
        policy("shop", "nobody", "  selector: {matchLabels: {app: nope}}\n"),
        policy("legacy", "outside", "  selector: {matchLabels: {app: old}}\n"),
        policy(
            "shop",
            "gw",
            "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: ingress}]\n",
        ),
        policy(
            "shop",
            "mixed",
            "  targetRefs:\n  - {kind: Service, name: missing}\n  - {kind: ServiceEntry, group: networking.istio.io, name: ext}\n  - {kind: Service, name: web}\n",
        ),
    ]
    .concat();
    let (authz, findings) = translated(&policies);
    assert_eq!(
        authz.keys().collect::<Vec<_>>(),
        ["legacy/outside", "shop/mixed", "shop/nobody"]
    );
    assert_eq!(
        codes_of(&findings),
        [
            (
                "MESH0204",
                "AuthorizationPolicy shop/nobody".into(),
                Some("spec.selector.matchLabels".into())
            ),
            (
                "MESH0204",
                "AuthorizationPolicy legacy/outside".into(),
                Some("spec.selector.matchLabels".into())
            ),
            (
                "MESH0205",
                "AuthorizationPolicy shop/gw".into(),
                Some("spec.targetRefs[0]".into())
            ),
            (
                "MESH0206",
                "AuthorizationPolicy shop/mixed".into(),
                Some("spec.targetRefs[0]".into())
            ),
            (
                "MESH0205",
                "AuthorizationPolicy shop/mixed".into(),
                Some("spec.targetRefs[1]".into())
            ),
        ]
    );
    assert_eq!(
        findings[1].message,
        "selector {app=old} matches no mesh workload (1 matching pod(s) are outside the mesh, where agents enforce nothing)"
    );
    assert_eq!(listed(&policies)["shop/web-1"], [STRICT, "shop/mixed"]);
}

#[test]
fn findings_are_in_the_load_warnings() {
    let snapshot = load(&policy(
        "shop",
        "c",
        "  action: CUSTOM\n  provider: {name: x}\n",
    ));
    assert_eq!(snapshot.findings.len(), 1);
    let line = snapshot
        .warnings
        .iter()
        .find(|w| w.contains("MESH0201"))
        .unwrap();
    assert!(
        line.starts_with("Warning [MESH0201] AuthorizationPolicy shop/c (10-authz.yaml) spec.action: action CUSTOM"),
        "{line}"
    );
}

#[test]
fn a_selector_matching_an_ingress_gateway_pod_is_enforced_there() {
    // `legacy` pods are outside the mesh; one of them becomes the pod of
    // an ingress Gateway, which enforces the policy itself.
    let gateway = "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: legacy}\nspec:\n  selector: {app: old}\n  servers:\n  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}\n";
    let policies = policy(
        "legacy",
        "outside",
        "  selector: {matchLabels: {app: old}}\n",
    );
    let (_, before) = translated(&policies);
    assert_eq!(codes_of(&before)[0].0, "MESH0204");
    let (_, after) = translated(&(policies + gateway));
    assert!(
        codes_of(&after).iter().all(|c| c.0 != "MESH0204"),
        "{:?}",
        codes_of(&after)
    );
}
