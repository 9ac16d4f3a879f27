//! The ingress gateway translation against the seed Gateways (000-01,
//! 003-01, 004-01, unmodified) and small Gateways of each server kind, on
//! the waypoint tests' mesh plus gateway pods.
use envoy_types::pb::envoy::{
    config::{
        core::v3::{address, data_source, socket_address, transport_socket},
        listener::v3::{filter, FilterChain, Listener},
        route::v3::{
            route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier,
            virtual_host::TlsRequirementType, RouteConfiguration, VirtualHost,
        },
    },
    extensions::{
        filters::network::{
            http_connection_manager::v3::{
                http_connection_manager::RouteSpecifier, HttpConnectionManager,
            },
            tcp_proxy::v3::{tcp_proxy, TcpProxy},
        },
        transport_sockets::tls::v3::{
            common_tls_context::ValidationContextType, tls_parameters::TlsProtocol,
            DownstreamTlsContext,
        },
    },
};
use prost::Message as _;

use super::{listeners::DOWNSTREAM_TLS_TYPE, *};
use crate::{
    source::{load_files, SourceConfig},
    translate::waypoint::{
        listener::HCM_TYPE,
        tests::{base_yaml, seed},
        translate as translate_all,
    },
};

/// Gateway pods: `ingress-0` in istio-system (istio=ingressgateway) and
/// `edge-0` in default (app=my-gateway-controller).
const GATEWAY_PODS: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: ingress-0
  namespace: istio-system
  labels: {istio: ingressgateway}
spec: {nodeName: node-1, serviceAccountName: istio-ingressgateway}
status: {podIP: 10.244.8.1}
---
apiVersion: v1
kind: Pod
metadata:
  name: edge-0
  namespace: default
  labels: {app: my-gateway-controller}
spec: {nodeName: node-1, serviceAccountName: edge}
status: {podIP: 10.244.8.2}
";

fn pods(files: &[(String, String)]) -> BTreeMap<String, GatewayPod> {
    let mut all = vec![
        ("00-base.yaml".to_string(), base_yaml()),
        ("01-pods.yaml".to_string(), GATEWAY_PODS.to_string()),
    ];
    all.extend(files.iter().cloned());
    let state = load_files(&all, &SourceConfig::default())
        .unwrap_or_else(|p| panic!("{p:?}"))
        .state;
    translate_all(&state, "istio-system").gateways
}

fn seeds(names: &[&str]) -> BTreeMap<String, GatewayPod> {
    let files: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("{n}.yaml"), seed(n)))
        .collect();
    pods(&files)
}

fn hcm(chain: &FilterChain) -> HttpConnectionManager {
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no typed config");
    };
    assert_eq!(any.type_url, HCM_TYPE);
    HttpConnectionManager::decode(any.value.as_slice()).unwrap()
}

fn rds(chain: &FilterChain) -> String {
    match hcm(chain).route_specifier {
        Some(RouteSpecifier::Rds(rds)) => rds.route_config_name,
        other => panic!("not RDS: {other:?}"),
    }
}

fn port(l: &Listener) -> (String, u32) {
    let Some(address::Address::SocketAddress(sa)) = l.address.clone().unwrap().address else {
        panic!("no socket address");
    };
    let Some(socket_address::PortSpecifier::PortValue(p)) = sa.port_specifier else {
        panic!("no port");
    };
    (sa.address, p)
}

fn tls(chain: &FilterChain) -> DownstreamTlsContext {
    let ts = chain.transport_socket.as_ref().expect("transport socket");
    assert_eq!(ts.name, "envoy.transport_sockets.tls");
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!("no typed config");
    };
    assert_eq!(any.type_url, DOWNSTREAM_TLS_TYPE);
    DownstreamTlsContext::decode(any.value.as_slice()).unwrap()
}

fn sni(chain: &FilterChain) -> Vec<String> {
    chain
        .filter_chain_match
        .as_ref()
        .map(|m| m.server_names.clone())
        .unwrap_or_default()
}

fn vhosts(rc: &RouteConfiguration) -> Vec<(&str, Vec<&str>)> {
    rc.virtual_hosts
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.domains.iter().map(String::as_str).collect(),
            )
        })
        .collect()
}

/// `(route name, path or prefix, cluster)` of each route.
fn routes_of(vh: &VirtualHost) -> Vec<(String, String, String)> {
    vh.routes
        .iter()
        .map(|r| {
            let path = match r.r#match.as_ref().and_then(|m| m.path_specifier.clone()) {
                Some(PathSpecifier::Path(p)) => format!("={p}"),
                Some(PathSpecifier::Prefix(p)) => p,
                other => format!("{other:?}"),
            };
            let cluster = match &r.action {
                Some(Action::Route(a)) => match &a.cluster_specifier {
                    Some(ClusterSpecifier::Cluster(c)) => c.clone(),
                    other => format!("{other:?}"),
                },
                other => format!("{other:?}"),
            };
            (r.name.clone(), path, cluster)
        })
        .collect()
}

#[test]
fn seed_http_gateway_gives_one_plain_listener_and_http_80() {
    let pods = seeds(&["000-01"]);
    assert_eq!(pods.keys().collect::<Vec<_>>(), ["ingress-0.istio-system"]);
    let gw = &pods["ingress-0.istio-system"];
    assert_eq!(gw.gateways, ["default/bookinfos-gateway"]);
    assert_eq!(
        (gw.namespace.as_str(), gw.service_account.as_str()),
        ("istio-system", "istio-ingressgateway")
    );
    assert_eq!(gw.listeners.keys().collect::<Vec<_>>(), ["0.0.0.0_80"]);
    let l = &gw.listeners["0.0.0.0_80"];
    assert_eq!(port(l), ("0.0.0.0".into(), 80));
    assert_eq!(l.filter_chains.len(), 1);
    let chain = &l.filter_chains[0];
    assert!(chain.filter_chain_match.is_none() && chain.transport_socket.is_none());
    assert!(l.listener_filters.is_empty());
    assert_eq!(rds(chain), "http.80");
    let filters: Vec<String> = hcm(chain)
        .http_filters
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(
        filters,
        ["envoy.filters.http.fault", "envoy.filters.http.router"]
    );
    assert_eq!(gw.routes.keys().collect::<Vec<_>>(), ["http.80"]);
    let rc = &gw.routes["http.80"];
    assert_eq!(vhosts(rc), [("*:80", vec!["*"])]);
    let productpage = "outbound|9080||productpage.default.svc.cluster.local";
    let expected: Vec<(String, String, String)> = [
        "=/productpage",
        "/static",
        "=/login",
        "=/logout",
        "/api/v1/products",
    ]
    .iter()
    .map(|p| {
        (
            "default/bookinfos/0".into(),
            p.to_string(),
            productpage.into(),
        )
    })
    .collect();
    assert_eq!(routes_of(&rc.virtual_hosts[0]), expected);
    assert_eq!(
        rc.virtual_hosts[0].require_tls,
        TlsRequirementType::None as i32
    );
}

#[test]
fn seed_https_gateway_terminates_tls_with_its_files() {
    let pods = seeds(&["003-01", "003-02"]);
    assert_eq!(pods.keys().collect::<Vec<_>>(), ["edge-0.default"]);
    let gw = &pods["edge-0.default"];
    assert_eq!(gw.listeners.keys().collect::<Vec<_>>(), ["0.0.0.0_443"]);
    let l = &gw.listeners["0.0.0.0_443"];
    assert_eq!(port(l), ("0.0.0.0".into(), 443));
    let inspectors: Vec<&str> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(inspectors, ["envoy.filters.listener.tls_inspector"]);
    assert_eq!(l.filter_chains.len(), 1);
    let chain = &l.filter_chains[0];
    assert_eq!(sni(chain), ["ext-host.example.com"]);
    assert_eq!(rds(chain), "https.443.https.ext-host-gwy.default");
    let ctx = tls(chain);
    assert_eq!(ctx.require_client_certificate, None);
    let common = ctx.common_tls_context.unwrap();
    assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
    assert_eq!(
        common.tls_params.unwrap().tls_minimum_protocol_version,
        TlsProtocol::TlSv12 as i32
    );
    let file = |d: Option<envoy_types::pb::envoy::config::core::v3::DataSource>| match d
        .and_then(|d| d.specifier)
    {
        Some(data_source::Specifier::Filename(f)) => f,
        other => panic!("not a file: {other:?}"),
    };
    let cert = common.tls_certificates[0].clone();
    assert_eq!(file(cert.certificate_chain), "/tmp/tls.crt");
    assert_eq!(file(cert.private_key), "/tmp/tls.key");
    assert!(common.tls_certificate_sds_secret_configs.is_empty());
    assert!(common.validation_context_type.is_none());
    // 003-02 binds the Gateway but has no http routes: a host without
    // routes, as written.
    assert_eq!(
        gw.routes.keys().collect::<Vec<_>>(),
        ["https.443.https.ext-host-gwy.default"]
    );
    let rc = &gw.routes["https.443.https.ext-host-gwy.default"];
    assert_eq!(
        vhosts(rc),
        [(
            "ext-host.example.com:443",
            vec!["ext-host.example.com", "ext-host.example.com:*"]
        )]
    );
    assert!(rc.virtual_hosts[0].routes.is_empty());
}

#[test]
fn gateways_selecting_one_pod_merge_by_port_and_gateway_only_routes_stay_off_waypoints() {
    let pods = seeds(&["000-01", "004-01"]);
    let gw = &pods["ingress-0.istio-system"];
    assert_eq!(
        gw.gateways,
        ["default/bookinfos-gateway", "default/addons-gateway"]
    );
    assert_eq!(gw.listeners.keys().collect::<Vec<_>>(), ["0.0.0.0_80"]);
    assert_eq!(gw.listeners["0.0.0.0_80"].filter_chains.len(), 1);
    let rc = &gw.routes["http.80"];
    let names: Vec<&str> = vhosts(rc).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["*:80", "dashboard.test01-jeonj.io:80"]);
    assert_eq!(
        routes_of(&rc.virtual_hosts[1]),
        [
            (
                "default/kiali/0".to_string(),
                "/kiali".to_string(),
                "outbound|20001||kiali.default.svc.cluster.local".to_string()
            ),
            (
                "default/tracing/0".to_string(),
                "/jaeger".to_string(),
                "outbound|80||tracing.default.svc.cluster.local".to_string()
            ),
        ]
    );
    // The edge pod is selected by neither.
    assert!(!pods.contains_key("edge-0.default"));
    // The waypoint keeps bookinfos (bound to mesh too), never kiali.
    let mut all = vec![
        ("00-base.yaml".to_string(), base_yaml()),
        ("01-pods.yaml".to_string(), GATEWAY_PODS.to_string()),
    ];
    all.extend(["000-01", "004-01"].map(|s| (format!("{s}.yaml"), seed(s))));
    let state = load_files(&all, &SourceConfig::default()).unwrap().state;
    let t = translate_all(&state, "istio-system");
    let dump = format!("{:?}", t.routes["waypoint/default/wp"]);
    assert!(dump.contains("default/bookinfos/0"));
    assert!(!dump.contains("default/kiali") && !dump.contains("dashboard.test01"));
}

fn gateway(name: &str, servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: istio-system}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}"
    )
}

fn vs(name: &str, hosts: &str, gateways: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: {hosts}\n  gateways: {gateways}\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n"
    )
}

#[test]
fn sni_chains_go_exact_then_wildcard_then_default() {
    let servers = "
  - {port: {number: 443, name: any, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: any-cert}}
  - {port: {number: 443, name: wild, protocol: HTTPS}, hosts: ['*/*.example.com'], tls: {mode: SIMPLE, credentialName: wild-cert}}
  - {port: {number: 443, name: shop, protocol: HTTPS}, hosts: [shop.example.com, default/api.example.com], tls: {mode: SIMPLE, credentialName: shop-cert}}
  - {port: {number: 443, name: again, protocol: HTTPS}, hosts: [shop.example.com], tls: {mode: SIMPLE, credentialName: again-cert}}
  - {port: {number: 443, name: any2, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: any2-cert}}
";
    let pods = pods(&[("g.yaml".into(), gateway("gw", servers))]);
    let l = &pods["ingress-0.istio-system"].listeners["0.0.0.0_443"];
    let chains: Vec<(Vec<String>, String)> =
        l.filter_chains.iter().map(|c| (sni(c), rds(c))).collect();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        chains,
        [
            (
                s(&["shop.example.com", "api.example.com"]),
                "https.443.shop.gw.istio-system".to_string()
            ),
            (
                s(&["*.example.com"]),
                "https.443.wild.gw.istio-system".to_string()
            ),
            (vec![], "https.443.any.gw.istio-system".to_string()),
        ]
    );
    let sds: Vec<String> = l
        .filter_chains
        .iter()
        .map(|c| {
            tls(c)
                .common_tls_context
                .unwrap()
                .tls_certificate_sds_secret_configs[0]
                .name
                .clone()
        })
        .collect();
    assert_eq!(
        sds,
        [
            "kubernetes://shop-cert",
            "kubernetes://wild-cert",
            "kubernetes://any-cert"
        ]
    );
}

#[test]
fn https_redirect_requires_tls_and_hosts_are_admitted_by_the_server() {
    let servers = "
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*.example.com'], tls: {httpsRedirect: true}}
";
    let yaml = gateway("gw", servers)
        + &vs("shop", "[shop.example.com, other.org]", "[istio-system/gw]")
        + &vs("all", "['*']", "[istio-system/gw]")
        + &vs("elsewhere", "[shop.example.com]", "[gw]");
    let pods = pods(&[("g.yaml".into(), yaml)]);
    let rc = &pods["ingress-0.istio-system"].routes["http.80"];
    assert_eq!(
        vhosts(rc),
        [
            (
                "shop.example.com:80",
                vec!["shop.example.com", "shop.example.com:*"]
            ),
            ("*.example.com:80", vec!["*.example.com", "*.example.com:*"]),
        ]
    );
    for vh in &rc.virtual_hosts {
        assert_eq!(
            vh.require_tls,
            TlsRequirementType::All as i32,
            "{}",
            vh.name
        );
    }
    // `gw` in namespace default names no Gateway: `elsewhere` binds nothing.
    let names: Vec<&str> = rc.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["default/shop/0"]);
    assert_eq!(
        routes_of(&rc.virtual_hosts[1])[0].2,
        "outbound|9080||reviews.default.svc.cluster.local"
    );
}

#[test]
fn mutual_tls_requires_client_certificates_from_files_or_the_credential() {
    let servers = "
  - {port: {number: 443, name: files, protocol: HTTPS}, hosts: [a.example.com], tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}}
  - {port: {number: 443, name: cred, protocol: HTTPS}, hosts: [b.example.com], tls: {mode: MUTUAL, credentialName: b-cert}}
  - {port: {number: 8443, name: pass, protocol: HTTPS}, hosts: ['*'], tls: {mode: PASSTHROUGH}}
  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: ['*']}
";
    let pods = pods(&[("g.yaml".into(), gateway("gw", servers))]);
    let gw = &pods["ingress-0.istio-system"];
    // PASSTHROUGH and TCP servers no VirtualService routes get no listener.
    assert_eq!(gw.listeners.keys().collect::<Vec<_>>(), ["0.0.0.0_443"]);
    let chains = &gw.listeners["0.0.0.0_443"].filter_chains;
    let files = tls(&chains[0]);
    assert_eq!(
        files.require_client_certificate.map(|b| b.value),
        Some(true)
    );
    match files.common_tls_context.unwrap().validation_context_type {
        Some(ValidationContextType::ValidationContext(v)) => assert_eq!(
            v.trusted_ca.and_then(|d| d.specifier),
            Some(data_source::Specifier::Filename("/ca.pem".into()))
        ),
        other => panic!("{other:?}"),
    }
    let cred = tls(&chains[1]);
    assert_eq!(cred.require_client_certificate.map(|b| b.value), Some(true));
    let common = cred.common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "kubernetes://b-cert"
    );
    assert!(common.tls_certificates.is_empty());
    match common.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            assert_eq!(s.name, "kubernetes://b-cert-cacert")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_pod_gets_only_the_gateways_selecting_it() {
    let yaml = gateway(
        "gw",
        "  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}\n",
    ) + "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: default}\nspec:\n  selector: {app: my-gateway-controller}\n  servers:\n  - {port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}\n"
        + "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: nobody, namespace: default}\nspec:\n  servers:\n  - {port: {number: 81, name: http, protocol: HTTP}, hosts: ['*']}\n";
    let pods = pods(&[("g.yaml".into(), yaml)]);
    assert_eq!(
        pods.keys().collect::<Vec<_>>(),
        ["edge-0.default", "ingress-0.istio-system"]
    );
    assert_eq!(
        pods["ingress-0.istio-system"]
            .listeners
            .keys()
            .collect::<Vec<_>>(),
        ["0.0.0.0_80"]
    );
    assert_eq!(
        pods["edge-0.default"].listeners.keys().collect::<Vec<_>>(),
        ["0.0.0.0_8080"]
    );
    assert_eq!(pods["edge-0.default"].gateways, ["default/edge"]);
    assert_eq!(
        pods["edge-0.default"].routes.keys().collect::<Vec<_>>(),
        ["http.8080"]
    );
}

#[test]
fn a_gateway_applies_only_virtual_services_exported_to_its_namespace() {
    let servers = "
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}
";
    let names = |export_to: &str| {
        let yaml = gateway("gw", servers)
            + &vs("shop", "[shop.example.com]", "[istio-system/gw]")
                .replace("  http:", &format!("  exportTo: {export_to}\n  http:"));
        let pods = pods(&[("g.yaml".into(), yaml)]);
        let rc = &pods["ingress-0.istio-system"].routes["http.80"];
        vhosts(rc)
            .into_iter()
            .map(|(name, _)| name.to_string())
            .collect::<Vec<_>>()
    };
    // The gateway pod is in istio-system: a VirtualService private to
    // default is invisible to it, one exported there (or everywhere) binds.
    assert!(names("['.']").is_empty(), "{:?}", names("['.']"));
    assert_eq!(names("[istio-system]"), ["shop.example.com:80"]);
    assert_eq!(names("['*']"), ["shop.example.com:80"]);
}

fn authz(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

/// A plain HTTP port and an HTTPS port with two SNI chains on ingress-0,
/// plain 8080 on edge-0, and `policies`.
fn guarded(policies: &str) -> BTreeMap<String, GatewayPod> {
    let servers = "
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}
  - {port: {number: 443, name: shop, protocol: HTTPS}, hosts: [shop.example.com], tls: {mode: SIMPLE, credentialName: shop-cert}}
  - {port: {number: 443, name: any, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: any-cert}}
";
    let yaml = gateway("gw", servers)
        + "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: default}\nspec:\n  selector: {app: my-gateway-controller}\n  servers:\n  - {port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}\n"
        + policies;
    pods(&[("g.yaml".into(), yaml)])
}

/// One RBAC filter as `(filter name, action, [(policy, permissions)])`.
type RbacView = (String, i32, Vec<(String, String)>);

/// The HTTP filters of every chain of every listener of `pod`: the names,
/// and the RBAC filters' rules.
fn chain_filters(pod: &GatewayPod) -> Vec<(Vec<String>, Vec<RbacView>)> {
    use envoy_types::pb::envoy::extensions::filters::{
        http::rbac::v3::Rbac, network::http_connection_manager::v3::http_filter::ConfigType,
    };
    let chains: Vec<&FilterChain> = pod
        .listeners
        .values()
        .flat_map(|l| &l.filter_chains)
        .collect();
    assert!(!chains.is_empty());
    chains
        .into_iter()
        .map(|c| {
            let filters = hcm(c).http_filters;
            let names = filters.iter().map(|f| f.name.clone()).collect();
            let rbac = filters
                .iter()
                .filter(|f| f.name.contains(".rbac"))
                .map(|f| {
                    let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                        panic!("no typed config");
                    };
                    let rules = Rbac::decode(any.value.as_slice()).unwrap().rules.unwrap();
                    let mut policies: Vec<(String, String)> = rules
                        .policies
                        .iter()
                        .map(|(n, p)| (n.clone(), format!("{:?}", p.permissions)))
                        .collect();
                    policies.sort();
                    (f.name.clone(), rules.action, policies)
                })
                .collect();
            (names, rbac)
        })
        .collect()
}

const FAULT: &str = "envoy.filters.http.fault";
const ROUTER: &str = "envoy.filters.http.router";
const DENY: &str = "envoy.filters.http.rbac.deny";
const ALLOW: &str = "envoy.filters.http.rbac.allow";

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_deny_policy_selecting_the_gateway_guards_every_chain() {
    let pods = guarded(&authz(
        "deny-admin",
        "istio-system",
        "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n",
    ));
    let chains = chain_filters(&pods["ingress-0.istio-system"]);
    assert_eq!(chains.len(), 3, "port 80 and two SNI chains on 443");
    for (filters, rbac) in chains {
        assert_eq!(filters, names(&[FAULT, DENY, ROUTER]));
        let [(name, action, policies)] = rbac.as_slice() else {
            panic!("{rbac:?}");
        };
        assert_eq!((name.as_str(), *action), (DENY, 1));
        assert_eq!(policies.len(), 1);
        assert_eq!(policies[0].0, "ns[istio-system]-policy[deny-admin]-rule[0]");
        assert!(policies[0].1.contains("Exact(\"/admin\")"), "{policies:?}");
    }
    // The selector does not match edge-0 (and it is in another namespace).
    for (filters, _) in chain_filters(&pods["edge-0.default"]) {
        assert_eq!(filters, names(&[FAULT, ROUTER]));
    }
}

#[test]
fn policies_of_other_namespaces_or_with_target_refs_do_not_apply() {
    let pods = guarded(
        &(authz(
            "elsewhere",
            "default",
            "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n",
        ) + &authz(
            "targeted",
            "istio-system",
            "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n  action: DENY\n  rules: [{}]\n",
        ) + &authz(
            "dry",
            "istio-system",
            "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules: [{}]\n",
        )
        .replace(
            "namespace: istio-system}",
            "namespace: istio-system, annotations: {istio.io/dry-run: 'true'}}",
        )),
    );
    for (filters, _) in chain_filters(&pods["ingress-0.istio-system"]) {
        assert_eq!(filters, names(&[FAULT, ROUTER]));
    }
    // `default`'s policy selects nothing in default: edge-0 has no
    // istio=ingressgateway label.
    for (filters, _) in chain_filters(&pods["edge-0.default"]) {
        assert_eq!(filters, names(&[FAULT, ROUTER]));
    }
}

#[test]
fn allow_get_deny_and_audit_policies_in_istio_order_with_fail_safe_rules() {
    let pods = guarded(
        &(authz(
            "get-only",
            "istio-system",
            "  selector: {matchLabels: {istio: ingressgateway}}\n  action: ALLOW\n  rules:\n  - to: [{operation: {methods: [GET]}}]\n  - from: [{source: {requestPrincipals: ['issuer/subject']}}]\n",
        ) + &authz(
            "jwt-deny",
            "istio-system",
            "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules:\n  - from: [{source: {requestPrincipals: ['issuer/subject']}}]\n    to: [{operation: {paths: [/private]}}]\n",
        ) + &authz(
            "audit",
            "istio-system",
            "  selector: {matchLabels: {istio: ingressgateway}}\n  action: AUDIT\n  rules: [{to: [{operation: {paths: [/login]}}]}]\n",
        )),
    );
    for (filters, rbac) in chain_filters(&pods["ingress-0.istio-system"]) {
        assert_eq!(
            filters,
            names(&[FAULT, DENY, ALLOW, "envoy.filters.http.rbac.audit", ROUTER])
        );
        assert_eq!(rbac[2].1, 2, "AUDIT logs (LOG)");
        let deny = &rbac[0];
        let allow = &rbac[1];
        // The DENY rule loses the attribute it cannot check: it denies
        // /private to everyone.
        assert_eq!((deny.1, deny.2.len()), (1, 1));
        assert_eq!(deny.2[0].0, "ns[istio-system]-policy[jwt-deny]-rule[0]");
        assert!(deny.2[0].1.contains("Exact(\"/private\")"), "{deny:?}");
        // The ALLOW rule needing a JWT is dropped: only GET is allowed.
        assert_eq!(allow.1, 0);
        let policy_names: Vec<&str> = allow.2.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(policy_names, ["ns[istio-system]-policy[get-only]-rule[0]"]);
        assert!(allow.2[0].1.contains(":method"), "{allow:?}");
        assert!(allow.2[0].1.contains("Exact(\"GET\")"), "{allow:?}");
    }
}

#[test]
fn root_namespace_and_namespace_wide_policies_apply() {
    let pods = guarded(
        &(authz(
            "mesh-wide",
            "istio-system",
            "  action: DENY\n  rules: [{to: [{operation: {paths: [/debug]}}]}]\n",
        ) + &authz(
            "default-wide",
            "default",
            "  action: DENY\n  rules: [{to: [{operation: {paths: [/internal]}}]}]\n",
        )),
    );
    let rules = |pod: &str| -> Vec<String> {
        let chains = chain_filters(&pods[pod]);
        let first = chains[0].clone();
        assert!(chains.iter().all(|c| *c == first));
        assert_eq!(first.0, names(&[FAULT, DENY, ROUTER]));
        first.1[0].2.iter().map(|(n, _)| n.clone()).collect()
    };
    assert_eq!(
        rules("ingress-0.istio-system"),
        ["ns[istio-system]-policy[mesh-wide]-rule[0]"]
    );
    assert_eq!(
        rules("edge-0.default"),
        [
            "ns[default]-policy[default-wide]-rule[0]",
            "ns[istio-system]-policy[mesh-wide]-rule[0]"
        ]
    );
}

// ---- TCP and TLS servers ----

fn tcp_proxy_of(chain: &FilterChain) -> TcpProxy {
    assert_eq!(chain.filters.len(), 1);
    assert_eq!(chain.filters[0].name, "envoy.filters.network.tcp_proxy");
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no typed config");
    };
    assert_eq!(any.type_url, tcp::TCP_PROXY_TYPE);
    TcpProxy::decode(any.value.as_slice()).unwrap()
}

/// `cluster` or `name:weight,…` of a tcp_proxy.
fn tcp_target(chain: &FilterChain) -> String {
    match tcp_proxy_of(chain).cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| format!("{}:{}", c.name, c.weight))
            .collect::<Vec<_>>()
            .join(","),
        None => panic!("no cluster"),
    }
}

fn l4_vs(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  gateways: [istio-system/gw]\n{spec}"
    )
}

#[test]
fn a_tcp_server_relays_to_the_first_tcp_route_matching_its_port() {
    let servers = "
  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: ['*']}
  - {port: {number: 27017, name: mongo, protocol: MONGO}, hosts: ['*']}
  - {port: {number: 3306, name: mysql, protocol: MYSQL}, hosts: ['*']}
";
    let yaml = gateway("gw", servers)
        + &l4_vs(
            "first",
            "  hosts: ['*']\n  tcp:\n  - match: [{port: 9000}]\n    route: [{destination: {host: ratings, port: {number: 9080}}}]\n  - route:\n    - {destination: {host: reviews}, weight: 80}\n    - {destination: {host: httpbin}, weight: 20}\n",
        )
        + &l4_vs(
            "second",
            "  hosts: ['*']\n  tcp:\n  - match: [{port: 9000}]\n    route: [{destination: {host: productpage}}]\n",
        );
    let pods = pods(&[("g.yaml".into(), yaml)]);
    let gw = &pods["ingress-0.istio-system"];
    assert_eq!(
        gw.listeners.keys().collect::<Vec<_>>(),
        ["0.0.0.0_27017", "0.0.0.0_3306", "0.0.0.0_9000"]
    );
    let l = &gw.listeners["0.0.0.0_9000"];
    assert_eq!(port(l), ("0.0.0.0".into(), 9000));
    assert_eq!(l.filter_chains.len(), 1);
    assert!(l.filter_chains[0].filter_chain_match.is_none());
    assert!(l.filter_chains[0].transport_socket.is_none());
    assert!(l.listener_filters.is_empty());
    // The first VirtualService's first matching route wins.
    assert_eq!(
        tcp_target(&l.filter_chains[0]),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    assert_eq!(
        tcp_proxy_of(&l.filter_chains[0]).stat_prefix,
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    // A route without match takes every port: weighted, each service's only port.
    assert_eq!(
        tcp_target(&gw.listeners["0.0.0.0_27017"].filter_chains[0]),
        "outbound|9080||reviews.default.svc.cluster.local:80,outbound|8000||httpbin.default.svc.cluster.local:20"
    );
    // No HTTP routes for TCP ports.
    assert!(gw.routes.is_empty(), "{:?}", gw.routes.keys());
}

#[test]
fn passthrough_chains_match_the_sni_hosts_the_server_admits() {
    let servers = "
  - {port: {number: 443, name: pass, protocol: TLS}, hosts: ['*.example.com'], tls: {mode: PASSTHROUGH}}
  - {port: {number: 443, name: web, protocol: HTTPS}, hosts: [web.example.com], tls: {mode: SIMPLE, credentialName: web-cert}}
";
    let yaml = gateway("gw", servers)
        + &l4_vs(
            "pass",
            "  hosts: ['*.example.com']\n  tls:\n  - match: [{sniHosts: [a.example.com, other.org], port: 443}]\n    route: [{destination: {host: ratings, port: {number: 9080}}}]\n  - match: [{sniHosts: ['*']}]\n    route: [{destination: {host: reviews}}]\n  - match: [{sniHosts: [a.example.com]}]\n    route: [{destination: {host: httpbin}}]\n  - match: [{sniHosts: [b.example.com], port: 8443}]\n    route: [{destination: {host: httpbin}}]\n",
        )
        + &vs("web", "[web.example.com]", "[istio-system/gw]");
    let pods = pods(&[("g.yaml".into(), yaml)]);
    let gw = &pods["ingress-0.istio-system"];
    let l = &gw.listeners["0.0.0.0_443"];
    assert_eq!(l.listener_filters[0].name, listeners::TLS_INSPECTOR);
    let chains: Vec<(Vec<String>, String, bool)> = l
        .filter_chains
        .iter()
        .map(|c| (sni(c), c.name.clone(), c.transport_socket.is_some()))
        .collect();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        chains,
        [
            // other.org is outside the server's hosts; the third route's
            // a.example.com is the first's already; b.example.com is for 8443.
            (s(&["a.example.com"]), "default/pass/tls[0]".into(), false),
            (
                s(&["web.example.com"]),
                "https.443.web.gw.istio-system".into(),
                true
            ),
            // `*` meets the server's `*.example.com`: the narrower stays.
            (s(&["*.example.com"]), "default/pass/tls[1]".into(), false),
        ]
    );
    assert_eq!(
        tcp_target(&l.filter_chains[0]),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    assert_eq!(
        tcp_target(&l.filter_chains[2]),
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    assert_eq!(rds(&l.filter_chains[1]), "https.443.web.gw.istio-system");
    assert_eq!(
        gw.routes.keys().collect::<Vec<_>>(),
        ["https.443.web.gw.istio-system"]
    );
}

#[test]
fn a_tls_server_terminated_without_http_relays_its_tcp_route() {
    let servers = "
  - {port: {number: 9443, name: tlst, protocol: TLS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: db-cert}}
  - {port: {number: 15443, name: auto, protocol: TLS}, hosts: ['*'], tls: {mode: AUTO_PASSTHROUGH}}
";
    let yaml = gateway("gw", servers)
        + &l4_vs(
            "db",
            "  hosts: ['*']\n  tcp:\n  - route: [{destination: {host: ratings}}]\n  tls:\n  - match: [{sniHosts: ['*']}]\n    route: [{destination: {host: reviews}}]\n",
        );
    let pods = pods(&[("g.yaml".into(), yaml)]);
    let gw = &pods["ingress-0.istio-system"];
    // AUTO_PASSTHROUGH stays unserved.
    assert_eq!(gw.listeners.keys().collect::<Vec<_>>(), ["0.0.0.0_9443"]);
    let chain = &gw.listeners["0.0.0.0_9443"].filter_chains[0];
    assert_eq!(
        tcp_target(chain),
        "outbound|9080||ratings.default.svc.cluster.local"
    );
    let common = tls(chain).common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "kubernetes://db-cert"
    );
    assert!(common.alpn_protocols.is_empty(), "no ALPN for TCP");
}

/// A client that reached the gateway on another port (a port-forward's
/// 8443, a NodePort) names that port in `Host`; istiod's `<host>:*`
/// domain (an Envoy prefix wildcard) takes it, `*` needs none.
#[test]
fn a_host_with_any_port_has_a_domain() {
    use super::routes::domains;
    assert_eq!(
        domains("bookinfo.example.com"),
        ["bookinfo.example.com", "bookinfo.example.com:*"]
    );
    assert_eq!(
        domains("*.example.com"),
        ["*.example.com", "*.example.com:*"]
    );
    assert_eq!(domains("*"), ["*"]);
    let prefix = domains("bookinfo.example.com")[1]
        .strip_suffix('*')
        .map(str::to_string)
        .unwrap();
    assert!("bookinfo.example.com:8443".starts_with(&prefix));
}
