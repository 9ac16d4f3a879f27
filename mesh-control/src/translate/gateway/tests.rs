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
        filters::network::http_connection_manager::v3::{
            http_connection_manager::RouteSpecifier, HttpConnectionManager,
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
    assert_eq!(vhosts(rc), [("*:80", vec!["*", "*:80"])]);
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
            vec!["ext-host.example.com", "ext-host.example.com:443"]
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
                vec!["shop.example.com", "shop.example.com:80"]
            ),
            (
                "*.example.com:80",
                vec!["*.example.com", "*.example.com:80"]
            ),
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
    // Passthrough and TCP servers are not served (yet).
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
