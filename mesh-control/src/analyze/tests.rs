use super::*;

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: bookinfo, labels: {app: reviews, version: v1}}
spec: {nodeName: node-1, serviceAccountName: reviews}
status: {podIP: 10.244.1.1}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {selector: {app: reviews}, clusterIP: 10.96.0.11, ports: [{port: 9080}]}
"#;

const ROUTING: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route:
    - destination: {host: reviews, subset: v1}
    - destination: {host: reviews.bookinfo.svc.cluster.local, subset: v3}
      weight: 10
    mirror: {host: ratings}
  tcp:
  - route:
    - destination: {host: en.wikipedia.org, port: {number: 443}}
      weight: 50
    - destination: {host: api.example.com}
      weight: 50
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: external, namespace: bookinfo}
spec:
  hosts: [api.example.com, "*.wikipedia.org"]
  ports: [{number: 443, name: https, protocol: TLS}]
"#;

const SECURITY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from:
    - source: {principals: [sleep, "cluster.local/ns/bookinfo/sa/productpage", "*/sa/x"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: bookinfo}
spec: {action: CUSTOM, provider: {name: opa}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict-nobody, namespace: bookinfo}
spec: {selector: {matchLabels: {app: nope}}, mtls: {mode: STRICT}}
"#;

fn files(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out = vec![
        ("00-mesh.yaml".to_string(), MESH.to_string()),
        ("10-routing.yaml".to_string(), ROUTING.to_string()),
        ("20-security.yaml".to_string(), SECURITY.to_string()),
    ];
    out.extend(extra.iter().map(|(n, t)| (n.to_string(), t.to_string())));
    out
}

fn summary(report: &Report) -> Vec<(Severity, &'static str, String, Option<String>)> {
    report
        .findings
        .iter()
        .map(|f| (f.severity, f.code, f.resource.clone(), f.field.clone()))
        .collect()
}

#[test]
fn finds_broken_references_and_security_issues() {
    let report = analyze_files(&files(&[]), &SourceConfig::default());
    let s = |x: &str| x.to_string();
    let some = |x: &str| Some(x.to_string());
    assert_eq!(
        summary(&report),
        [
            (
                Severity::Warning,
                "MESH0201",
                s("AuthorizationPolicy bookinfo/ext"),
                some("spec.action")
            ),
            (
                Severity::Warning,
                "MESH0107",
                s("DestinationRule bookinfo/reviews"),
                some("spec.host")
            ),
            (
                Severity::Warning,
                "MESH0103",
                s("DestinationRule bookinfo/reviews"),
                some("spec.subsets[1].labels")
            ),
            (
                Severity::Warning,
                "MESH0301",
                s("PeerAuthentication bookinfo/strict-nobody"),
                some("spec.selector.matchLabels")
            ),
            (
                Severity::Warning,
                "MESH0107",
                s("VirtualService bookinfo/reviews"),
                some("spec.hosts")
            ),
            (
                Severity::Warning,
                "MESH0101",
                s("VirtualService bookinfo/reviews"),
                some("spec.http[0].mirror.host")
            ),
            (
                Severity::Warning,
                "MESH0102",
                s("VirtualService bookinfo/reviews"),
                some("spec.http[0].route[1].destination.subset")
            ),
            // The http route's weights (none and 10) sum to 10: relative,
            // noted (ARCHITECTURE.md, decision 26).
            (Severity::Info, "MESH0002", s(""), None),
            (
                Severity::Info,
                "MESH0207",
                s("AuthorizationPolicy bookinfo/reviews"),
                some("spec.rules[0].from[0].source.principals[0]")
            ),
        ]
    );
    assert!(!report.has_errors());
    let unknown = report.with_code("MESH0101")[0];
    assert_eq!(
        unknown.message,
        "destination host \"ratings\" (ratings.bookinfo.svc.cluster.local) is no known Service or ServiceEntry host"
    );
    assert_eq!(unknown.file.as_deref(), Some("10-routing.yaml"));
    assert_eq!(
        report.with_code("MESH0301")[0].file.as_deref(),
        Some("20-security.yaml")
    );
    assert_eq!(
        report.with_code("MESH0103")[0].message,
        "subset \"v2\" (version=v2) matches no pod of Service bookinfo/reviews"
    );
    // Serializable as meshctl prints it.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["findings"][0]["severity"], "Warning");
    assert_eq!(json["findings"][0]["code"], "MESH0201");
}

#[test]
fn invalid_resources_are_errors_naming_the_field_and_the_rest_is_still_checked() {
    let bad = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: bookinfo}\nspec:\n  rules:\n  - to:\n    - operation: {ports: [\"99999\"]}\n";
    let report = analyze_files(
        &files(&[
            ("30-bad.yaml", bad),
            ("31-syntax.yaml", "kind: A\n---\nkind: [\n"),
        ]),
        &SourceConfig::default(),
    );
    let errors: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(
        errors[0],
        "Error [MESH0001] AuthorizationPolicy bookinfo/bad (30-bad.yaml) spec.rules[0].to[0].operation.ports[0]: 99999 is not a port number (1-65535)"
    );
    assert!(
        errors[1].starts_with("Error [MESH0001] document 2 (31-syntax.yaml): invalid YAML"),
        "{errors:?}"
    );
    // The other checks still ran.
    assert_eq!(report.with_code("MESH0102").len(), 1);
}

#[test]
fn values_from_config_dump_are_analyzed() {
    let values = vec![
        serde_json::json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "r", "namespace": "shop"},
            "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}}]}]}
        }),
        serde_json::json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "a", "namespace": "shop"},
            "spec": {"action": "BLOCK"}
        }),
    ];
    let report = analyze_values(values);
    assert_eq!(
        summary(&report),
        [
            (
                Severity::Error,
                "MESH0001",
                "AuthorizationPolicy shop/a".to_string(),
                Some("spec.action".to_string())
            ),
            (
                Severity::Warning,
                "MESH0104",
                "VirtualService shop/r".to_string(),
                Some("spec.hosts".to_string())
            ),
            (
                Severity::Warning,
                "MESH0101",
                "VirtualService shop/r".to_string(),
                Some("spec.http[0].route[0].destination.host".to_string())
            ),
        ]
    );
    assert!(report.findings.iter().all(|f| f.file.is_none()));
}

#[test]
fn directories() {
    let err = analyze_dir(Path::new("/nonexistent/analyze")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read configuration directory /nonexistent/analyze: No such file or directory (os error 2)"
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files(&[]) {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::fs::write(dir.path().join("99-binary.yaml"), [0xff, 0xfe]).unwrap();
    let report = analyze_dir(dir.path()).unwrap();
    assert_eq!(report.with_code("MESH0101").len(), 1);
    let errors: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        ["Error [MESH0001]  (99-binary.yaml): not UTF-8 text"]
    );
}

#[test]
fn address_rules_are_flagged_as_mesh_clients_only() {
    let policy = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-office, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bookinfo/sa/productpage"]}}]
  - from: [{source: {ipBlocks: ["192.168.0.0/16"]}}]
"#;
    let report = analyze_files(
        &files(&[("30-office.yaml", policy)]),
        &SourceConfig::default(),
    );
    let found: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.code == codes::AUTHZ_ADDRESS_PLAINTEXT)
        .map(|f| (f.resource.clone(), f.field.clone()))
        .collect();
    assert_eq!(
        found,
        [(
            "AuthorizationPolicy bookinfo/from-office".to_string(),
            Some("spec.rules[1].from[0].source.ipBlocks".to_string())
        )]
    );
}

#[test]
fn l7_configuration_without_a_proxy_to_run_on() {
    let mesh = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop2, labels: {istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: shop2}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop2}
spec: {clusterIP: 10.96.0.2, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop2, labels: {istio.io/use-waypoint: gone}}
spec: {clusterIP: 10.96.0.3, ports: [{port: 80}]}
"#;
    let routing = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec: {hosts: [web], http: [{route: [{destination: {host: web}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop2}
spec: {hosts: [web, api], http: [{route: [{destination: {host: web}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ingress, namespace: shop2}
spec: {hosts: [web.example.com], gateways: [gw], http: [{route: [{destination: {host: web}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: lost, namespace: shop2}
spec: {hosts: [web.example.com], gateways: [nowhere, shop/gw], http: [{route: [{destination: {host: web}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: typo, namespace: shop2}
spec: {hosts: [wbe], http: [{route: [{destination: {host: web}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: faulty, namespace: shop2}
spec:
  hosts: [api]
  http:
  - fault: {abort: {http2Error: REFUSED_STREAM}}
    route: [{destination: {host: api}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop2}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}
  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: ["*"]}
  - {port: {number: 443, name: tls, protocol: HTTPS}, hosts: ["*"], tls: {mode: ISTIO_MUTUAL}}
  - {port: {number: 15443, name: auto, protocol: TLS}, hosts: ["*"], tls: {mode: AUTO_PASSTHROUGH}}
"#;
    let report = analyze_files(
        &[
            ("m.yaml".into(), mesh.into()),
            ("r.yaml".into(), routing.into()),
        ],
        &SourceConfig::default(),
    );
    let found: Vec<String> = [
        "MESH0104", "MESH0105", "MESH0106", "MESH0107", "MESH0108", "MESH0109",
    ]
    .iter()
    .flat_map(|c| report.with_code(c))
    .map(|f| format!("{} {} {}", f.code, f.resource, f.message))
    .collect();
    assert_eq!(
        found,
        [
            "MESH0104 VirtualService shop2/typo hosts wbe name no Service of the mesh (short names resolve in namespace shop2): no waypoint applies this VirtualService",
            "MESH0105 VirtualService shop2/lost bound only to gateway(s) nowhere, shop/gw, which no networking.istio.io Gateway defines, so this VirtualService routes nothing",
            "MESH0106 Gateway shop2/gw selector {istio=ingressgateway} matches no pod: no ingress gateway pod serves this Gateway",
            "MESH0107 VirtualService shop/web Service shop/web uses no waypoint (no istio.io/use-waypoint label on it or its namespace): this VirtualService's L7 routing does not apply to its traffic",
            "MESH0107 VirtualService shop2/faulty Service shop2/api uses waypoint shop2/gone, which does not exist: this VirtualService's L7 routing does not apply to its traffic",
            "MESH0107 VirtualService shop2/web Service shop2/api uses waypoint shop2/gone, which does not exist: this VirtualService's L7 routing does not apply to its traffic",
            "MESH0108 VirtualService shop2/faulty not supported by Envoy's fault filter; waypoints skip this route",
            "MESH0109 Gateway shop2/gw HTTPS with tls.mode ISTIO_MUTUAL is not supported yet (SIMPLE, MUTUAL and PASSTHROUGH are): the ingress gateway does not serve port 443",
            "MESH0109 Gateway shop2/gw TLS with tls.mode AUTO_PASSTHROUGH is not supported yet (SIMPLE, MUTUAL and PASSTHROUGH are): the ingress gateway does not serve port 15443",
        ]
    );
    assert_eq!(
        report.with_code("MESH0109")[0].field.as_deref(),
        Some("spec.servers[2].tls.mode")
    );
    assert_eq!(
        report.with_code("MESH0108")[0].field.as_deref(),
        Some("spec.http[0].fault.abort.http2Error")
    );
}

#[test]
fn rules_a_waypoint_namespace_cannot_see_or_that_another_overrides() {
    let mesh = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: default}
spec: {gatewayClassName: istio-waypoint}
---
apiVersion: v1
kind: Service
metadata:
  name: cart
  namespace: shop
  labels: {istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: default}
spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}
"#;
    let routing = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: shop}
spec: {hosts: [cart], exportTo: ["."], http: [{route: [{destination: {host: cart}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: listed, namespace: shop}
spec: {hosts: [cart], exportTo: [".", default], http: [{route: [{destination: {host: cart}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: waypoint-own, namespace: default}
spec:
  hosts: [cart.shop.svc.cluster.local]
  exportTo: ["."]
  http: [{route: [{destination: {host: cart.shop.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: private, namespace: shop}
spec: {host: cart, exportTo: ["."]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: root, namespace: istio-system}
spec: {host: cart.shop.svc.cluster.local}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: waypoint-own, namespace: default}
spec: {host: cart.shop.svc.cluster.local, exportTo: ["."]}
"#;
    let report = analyze_files(
        &[
            ("m.yaml".into(), mesh.into()),
            ("r.yaml".into(), routing.into()),
        ],
        &SourceConfig::default(),
    );
    let found: Vec<String> = [codes::NOT_EXPORTED, codes::DR_SHADOWED]
        .iter()
        .flat_map(|c| report.with_code(c))
        .map(|f| {
            format!(
                "{} {} {}",
                f.resource,
                f.field.as_deref().unwrap_or(""),
                f.message
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "DestinationRule shop/private spec.exportTo exportTo [\".\"] does not include namespace default, where waypoint default/wp serves Service shop/cart: that waypoint does not apply this DestinationRule's subsets and traffic policy to their traffic",
            "VirtualService shop/private spec.exportTo exportTo [\".\"] does not include namespace default, where waypoint default/wp serves Service shop/cart: that waypoint does not apply this VirtualService's routes to their traffic",
            "DestinationRule istio-system/root spec.host the waypoint of namespace default applies DestinationRule default/waypoint-own to Service shop/cart instead (DestinationRules are looked up in the waypoint's namespace, then the service's, then the root namespace istio-system): this rule's subsets and traffic policy do not apply to it",
        ]
    );
    assert_eq!(
        report.with_code(codes::NOT_EXPORTED)[0].suggestion,
        "add \"default\" to spec.exportTo, or remove spec.exportTo to export it to every namespace"
    );
}

#[test]
fn service_entries_that_do_not_do_what_they_say() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.8, ports: [{port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: first, namespace: shop}
spec:
  hosts: [api.example.com, web.shop.svc.cluster.local]
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 53, name: dns, protocol: UDP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: second, namespace: shop}
spec:
  hosts: [api.example.com, "*.example.org"]
  resolution: DNS
  endpoints: [{address: lb.example.org}]
"#;
    let report = analyze_files(&[("se.yaml".into(), yaml.into())], &SourceConfig::default());
    let found: Vec<String> = ["MESH0112", "MESH0113", "MESH0114", "MESH0115"]
        .iter()
        .flat_map(|c| report.with_code(c))
        .map(|f| {
            format!(
                "{} {} {}: {}",
                f.code,
                f.resource,
                f.field.clone().unwrap(),
                f.message
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "MESH0112 ServiceEntry shop/first spec.hosts[1]: web.shop.svc.cluster.local is the hostname of Kubernetes Service shop/web: the Service keeps its VIPs, ports and endpoints and this entry adds nothing to it",
            "MESH0113 ServiceEntry shop/second spec.hosts[1]: wildcard host *.example.org with a DNS resolution gets no VIP: connections to the names it covers go to the address the client resolved, not to this entry's endpoints",
            "MESH0114 ServiceEntry shop/second spec.hosts[0]: api.example.com is also a host of ServiceEntry shop/first (se.yaml), which comes first and defines it: this entry's ports, addresses, resolution and endpoints for api.example.com are ignored (istiod would merge the two)",
            "MESH0115 ServiceEntry shop/first spec.ports[1].protocol: port 53 is UDP: the mesh carries TCP only, so this port is not published",
        ],
        "{report:#?}"
    );
    // Reported once, as structured findings, not again as load notes.
    assert!(report
        .with_code(codes::LOAD_NOTE)
        .iter()
        .all(|f| !f.message.contains("ServiceEntry")));
}

#[test]
fn subsets_of_a_service_entry_host_match_its_endpoints_labels() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints:
  - {address: 192.0.2.1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api.example.com
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;
    let report = analyze_files(&[("se.yaml".into(), yaml.into())], &SourceConfig::default());
    let fields: Vec<_> = report
        .with_code(codes::DR_SUBSET_NO_PODS)
        .iter()
        .map(|f| f.field.clone().unwrap())
        .collect();
    assert_eq!(fields, ["spec.subsets[1].labels"], "{report:#?}");
}
