use std::collections::BTreeMap;

use crate::{
    model::ingress::{IngressGateway, Protocol, Server, ServerMode, ServerTls, TlsMode},
    source::{load_files, SourceConfig},
};

fn seed(name: &str) -> String {
    let path = format!(
        "{}/tests/data/seeds/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(yaml: &str) -> Result<Vec<IngressGateway>, Vec<(String, String)>> {
    load_files(&[("g.yaml".into(), yaml.into())], &SourceConfig::default())
        .map(|s| s.state.ingress_gateways)
        .map_err(|p| p.into_iter().map(|p| (p.field, p.message)).collect())
}

#[test]
fn the_seed_gateways_load_unmodified() {
    let http = load(&seed("000-01")).unwrap();
    assert_eq!(
        http,
        [IngressGateway {
            name: "bookinfos-gateway".into(),
            namespace: "default".into(),
            file: "g.yaml".into(),
            selector: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
            pods_namespace: None,
            servers: vec![Server {
                port: 80,
                port_name: "http".into(),
                protocol: Protocol::Http,
                hosts: vec!["*".into()],
                tls: None,
            }],
        }]
    );
    let https = load(&seed("003-01")).unwrap();
    assert_eq!(
        https[0].servers,
        [Server {
            port: 443,
            port_name: "https".into(),
            protocol: Protocol::Https,
            hosts: vec!["ext-host.example.com".into()],
            tls: Some(ServerTls {
                mode: Some(TlsMode::Simple),
                https_redirect: false,
                server_certificate: Some("/tmp/tls.crt".into()),
                private_key: Some("/tmp/tls.key".into()),
                ca_certificates: None,
                credential_name: None,
            }),
        }]
    );
    let addons = load(&seed("004-01")).unwrap();
    assert_eq!(addons[0].name, "addons-gateway");
    assert_eq!(addons[0].servers[0].hosts, ["dashboard.test01-jeonj.io"]);
}

fn gateway(servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: edge}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}"
    )
}

#[test]
fn problems_name_the_field() {
    let cases = [
        (
            "  - {port: {number: 80, name: http, protocol: HTTPX}, hosts: ['*']}\n",
            "spec.servers[0].port.protocol",
            "unknown protocol \"HTTPX\"",
        ),
        (
            "  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*']}\n",
            "spec.servers[0].tls",
            "an HTTPS server needs tls",
        ),
        (
            "  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPEL}}\n",
            "spec.servers[0].tls.mode",
            "unknown TLS mode \"SIMPEL\"",
        ),
        (
            "  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: SIMPLE, privateKey: /k}}\n",
            "spec.servers[0].tls.serverCertificate",
            "tls mode SIMPLE needs serverCertificate and privateKey, or credentialName",
        ),
        (
            "  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}}\n",
            "spec.servers[0].tls.caCertificates",
            "tls mode MUTUAL needs caCertificates",
        ),
        (
            "  - {port: {number: 80, protocol: HTTP}, hosts: ['*']}\n",
            "spec.servers[0].port.name",
            "required field is missing",
        ),
        (
            "  - {port: {number: 70000, name: http, protocol: HTTP}, hosts: ['*']}\n",
            "spec.servers[0].port.number",
            "is not a port number",
        ),
    ];
    for (servers, field, message) in cases {
        let problems = load(&gateway(servers)).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|(f, m)| f == field && m.contains(message)),
            "{servers}: {problems:?}"
        );
    }
}

#[test]
fn credential_name_stands_for_the_files_and_passthrough_needs_none() {
    let gws = load(&gateway(
        "  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, credentialName: shop-cert}}\n  - {port: {number: 8443, name: tls, protocol: HTTPS}, hosts: ['*'], tls: {mode: PASSTHROUGH}}\n  - {port: {number: 80, name: http, protocol: http}, hosts: ['*'], tls: {httpsRedirect: true}}\n",
    ))
    .unwrap();
    let servers = &gws[0].servers;
    assert_eq!(
        servers[0].tls.as_ref().unwrap().credential_name.as_deref(),
        Some("shop-cert")
    );
    assert_eq!(servers[0].mode(), Ok(ServerMode::HttpsTerminate));
    assert_eq!(servers[1].mode(), Ok(ServerMode::Passthrough));
    assert_eq!(servers[2].protocol, Protocol::Http);
    assert!(servers[2].tls.as_ref().unwrap().https_redirect);
    assert_eq!(servers[2].unsupported(), None);
}

#[test]
fn tcp_and_tls_servers_are_served_and_auto_passthrough_is_not() {
    let gws = load(&gateway(
        "  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: ['*']}\n  - {port: {number: 27017, name: mongo, protocol: MONGO}, hosts: ['*']}\n  - {port: {number: 9443, name: tls, protocol: TLS}, hosts: ['*.example.com'], tls: {mode: PASSTHROUGH}}\n  - {port: {number: 9444, name: tlst, protocol: TLS}, hosts: ['*'], tls: {mode: SIMPLE, credentialName: c}}\n  - {port: {number: 15443, name: auto, protocol: TLS}, hosts: ['*'], tls: {mode: AUTO_PASSTHROUGH}}\n  - {port: {number: 15444, name: im, protocol: TLS}, hosts: ['*'], tls: {mode: ISTIO_MUTUAL}}\n",
    ))
    .unwrap();
    let modes: Vec<_> = gws[0].servers.iter().map(|s| s.mode()).collect();
    assert_eq!(
        modes,
        [
            Ok(ServerMode::Tcp),
            Ok(ServerMode::Tcp),
            Ok(ServerMode::Passthrough),
            Ok(ServerMode::TlsTerminate),
            Err("TLS with tls.mode AUTO_PASSTHROUGH is not supported yet (SIMPLE, MUTUAL and PASSTHROUGH are)".into()),
            Err("TLS with tls.mode ISTIO_MUTUAL is not supported yet (SIMPLE, MUTUAL and PASSTHROUGH are)".into()),
        ]
    );
    let problems = load(&gateway(
        "  - {port: {number: 9443, name: tls, protocol: TLS}, hosts: ['*']}\n",
    ))
    .unwrap_err();
    assert!(
        problems.iter().any(|(f, _)| f == "spec.servers[0].tls"),
        "{problems:?}"
    );
}
