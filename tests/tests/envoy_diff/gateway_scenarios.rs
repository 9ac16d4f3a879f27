//! The ingress gateway scenarios of the differential test: which seed
//! files (and test-owned YAML) are applied, which virtual hosts the
//! gateway pod's route configurations must then have, and what each
//! request must get.

/// Placeholder in test-owned YAML for the directory of the test's
/// certificates (`<name>.crt`, `<name>.key`, `ca.pem`).
pub const TLS_DIR: &str = "@TLS_DIR@";

/// How a probe reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP/1.1 on one keep-alive connection, `Host` as given.
    Http,
    /// HTTPS with SNI = the host, the certificate checked against the
    /// test CA; `client_cert`: present the test's client certificate.
    Https { client_cert: bool },
}

pub struct GatewayProbe {
    pub scheme: Scheme,
    pub port: u16,
    /// `Host` (and SNI): a port is added to the `Host` header when given
    /// here, never to SNI.
    pub host: &'static str,
    pub path: &'static str,
    /// Every reply's key: the answering pod (`<pod>.<ns>`), `status <code>`
    /// (`status 301 <location>` for a redirect), or `error` (no HTTP
    /// answer, e.g. a refused handshake).
    pub expect: &'static str,
}

pub struct GatewayScenario {
    pub name: &'static str,
    /// Seed files applied unmodified, then test-owned YAML (`file`, text
    /// with [`TLS_DIR`] replaced).
    pub seeds: &'static [&'static str],
    pub extra: &'static [(&'static str, &'static str)],
    /// Every virtual host name over Envoy's route configurations once the
    /// scenario is applied.
    pub vhosts: &'static [&'static str],
    /// The first probe's answer differs from the one under the previous
    /// scenario: it tells that a proxy has this scenario's configuration.
    pub probes: &'static [GatewayProbe],
}

pub const PRODUCTPAGE: &str = "productpage-v1.default";
pub const KIALI: &str = "kiali-v1.default";
pub const TRACING: &str = "tracing-v1.default";
pub const DASHBOARD: &str = "dashboard.test01-jeonj.io";

const fn http(host: &'static str, path: &'static str, expect: &'static str) -> GatewayProbe {
    GatewayProbe {
        scheme: Scheme::Http,
        port: 80,
        host,
        path,
        expect,
    }
}

const fn https(
    host: &'static str,
    port: u16,
    path: &'static str,
    client_cert: bool,
    expect: &'static str,
) -> GatewayProbe {
    GatewayProbe {
        scheme: Scheme::Https { client_cert },
        port,
        host,
        path,
        expect,
    }
}

/// A Gateway of the test's own on the pods the seeds' Gateways select:
/// two SNI certificates on 443, mutual TLS on 8443, and an HTTP server on
/// 80 that redirects to HTTPS; VirtualServices for its hosts.
pub const EDGE: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 443, name: https-a, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, serverCertificate: @TLS_DIR@/a.crt, privateKey: @TLS_DIR@/a.key}
  - port: {number: 443, name: https-b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: SIMPLE, serverCertificate: @TLS_DIR@/b.crt, privateKey: @TLS_DIR@/b.key}
  - port: {number: 8443, name: https-m, protocol: HTTPS}
    hosts: [m.example.com]
    tls: {mode: MUTUAL, serverCertificate: @TLS_DIR@/m.crt, privateKey: @TLS_DIR@/m.key, caCertificates: @TLS_DIR@/ca.pem}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [a.example.com]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: a
  namespace: default
spec:
  hosts: [a.example.com, m.example.com]
  gateways: [edge]
  http:
  - route:
    - destination: {host: productpage, port: {number: 9080}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: b
  namespace: default
spec:
  hosts: [b.example.com]
  gateways: [default/edge]
  http:
  - route:
    - destination: {host: kiali.default.svc.cluster.local, port: {number: 20001}}
"#;

/// A DENY policy selecting the gateway pods (Istio's workload selector):
/// enforced at the gateway, before routing.
pub const DENY_PRODUCTPAGE: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: no-productpage\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      istio: ingressgateway\n  action: DENY\n  rules:\n  - to:\n    - operation:\n        paths: [/productpage]\n";

pub const GATEWAY_SCENARIOS: &[GatewayScenario] = &[
    GatewayScenario {
        name: "004-01: the addons Gateway on :80, one exact host",
        seeds: &["004-01.yaml"],
        extra: &[],
        vhosts: &["dashboard.test01-jeonj.io:80"],
        probes: &[
            http(DASHBOARD, "/kiali/console", KIALI),
            http(DASHBOARD, "/jaeger/search", TRACING),
            http(DASHBOARD, "/productpage", "status 404"),
            // A host no VirtualService binds: no virtual host.
            http("unknown.example.com", "/kiali/console", "status 404"),
        ],
    },
    GatewayScenario {
        name: "000-01 + 004-01: bookinfo's `*` and the addons' exact host merged on :80",
        seeds: &["000-01.yaml", "004-01.yaml"],
        extra: &[],
        vhosts: &["*:80", "dashboard.test01-jeonj.io:80"],
        probes: &[
            http("bookinfo.example.com", "/productpage", PRODUCTPAGE),
            http("bookinfo.example.com", "/static/css/x.css", PRODUCTPAGE),
            http("bookinfo.example.com", "/login", PRODUCTPAGE),
            http("bookinfo.example.com", "/logout", PRODUCTPAGE),
            http("10.0.0.1", "/api/v1/products/1", PRODUCTPAGE),
            http("bookinfo.example.com", "/productpage/extra", "status 404"),
            http("bookinfo.example.com", "/elsewhere", "status 404"),
            // The exact host wins its requests, `*` does not catch its misses.
            http(DASHBOARD, "/kiali/console", KIALI),
            http("dashboard.test01-jeonj.io:80", "/jaeger", TRACING),
            http(DASHBOARD, "/productpage", "status 404"),
        ],
    },
    GatewayScenario {
        name: "003-01 + 003-02 and the test's `edge`: SNI, httpsRedirect, mutual TLS",
        seeds: &["003-01.yaml", "003-02.yaml"],
        extra: &[("60-edge.yaml", EDGE)],
        vhosts: &[
            "a.example.com:443",
            "b.example.com:443",
            "ext-host.example.com:443",
            "m.example.com:8443",
            "a.example.com:80",
        ],
        probes: &[
            https("a.example.com", 443, "/productpage", false, PRODUCTPAGE),
            https("b.example.com", 443, "/", false, KIALI),
            // The seed's Gateway (fixed certificate paths): its
            // VirtualService binds the host without routes.
            https("ext-host.example.com", 443, "/", false, "status 404"),
            // No server has the name: no certificate, no handshake.
            https("c.example.com", 443, "/", false, "error"),
            http(
                "a.example.com",
                "/productpage?x=1",
                "status 301 https://a.example.com/productpage?x=1",
            ),
            // No redirect server for this host on :80.
            http("b.example.com", "/", "status 404"),
            https("m.example.com", 8443, "/productpage", true, PRODUCTPAGE),
            https("m.example.com", 8443, "/productpage", false, "error"),
        ],
    },
    GatewayScenario {
        name: "000-01 with a DENY AuthorizationPolicy selecting the gateway pods",
        seeds: &["000-01.yaml"],
        extra: &[("70-deny.yaml", DENY_PRODUCTPAGE)],
        vhosts: &["*:80"],
        probes: &[
            http("bookinfo.example.com", "/productpage", "status 403"),
            http("bookinfo.example.com", "/api/v1/products/1", PRODUCTPAGE),
            http("bookinfo.example.com", "/productpage/extra", "status 404"),
        ],
    },
];
