//! Ingress through `mesh-waypoint --role gateway`, configured from Istio
//! `Gateway` objects and the VirtualServices bound to them
//! (docs/contracts/gateway-xds.md), with real traffic from a pod outside
//! the mesh: plain HTTP with the course notes' Gateways applied
//! unmodified (two Gateways merged on port 80, exact host before `*`),
//! HTTPS with SNI picking the certificate and the routes (checked by a
//! real `curl` against the certificate's SAN), `httpsRedirect`, mutual
//! TLS, and the notes' HTTPS Gateway whose certificate paths are fixed
//! (`/tmp/tls.crt`, `/tmp/tls.key`: written by the test, removed after),
//! an AuthorizationPolicy selecting the gateway pod enforced there, and
//! L4 servers: TCP relayed over HBONE with the gateway's identity (a
//! policy admitting only it), TLS PASSTHROUGH by SNI to a pod's own HTTPS
//! server (`openssl s_server`), the chains shown by `meshctl proxy-config`.
use std::{net::Ipv4Addr, path::Path, time::Duration};

use mesh_e2e::{cluster::Cluster, require_root, Binaries};
use mesh_testkit::try_eventually;

const GATEWAY: &str = "gateway";
const OUTSIDE: &str = "outside";

fn seed(file: &str) -> String {
    let path = format!(
        "{}/../mesh-control/tests/data/seeds/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A test CA and PEM files for leaf certificates it signs.
struct Pki {
    ca: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ingress test CA");
        let ca = params.self_signed(&key).unwrap();
        Self { ca, key }
    }

    /// Writes `<dir>/<name>.crt` / `.key` for `sans`; returns both paths.
    fn leaf(&self, dir: &Path, name: &str, sans: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(sans)
            .unwrap()
            .signed_by(&key, &self.ca, &self.key)
            .unwrap();
        let crt = dir.join(format!("{name}.crt"));
        let pem = dir.join(format!("{name}.key"));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem, key.serialize_pem()).unwrap();
        (crt.display().to_string(), pem.display().to_string())
    }

    /// Writes a leaf for `sans` to exactly `crt` and `key`.
    fn leaf_at(&self, crt: &Path, key_path: &Path, sans: &[&str]) {
        let key = rcgen::KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(sans)
            .unwrap()
            .signed_by(&key, &self.ca, &self.key)
            .unwrap();
        std::fs::write(crt, cert.pem()).unwrap();
        std::fs::write(key_path, key.serialize_pem()).unwrap();
    }

    fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.ca.pem()).unwrap();
    }
}

/// Files the test writes outside its own directory, removed on drop.
struct Written(Vec<&'static str>);

impl Drop for Written {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Two nodes: node1 has the client outside the mesh and the gateway pod
/// (neither captured), node2 the backends `productpage` (9080) and
/// `kiali` (20001).
fn cluster(tag: &str) -> Cluster {
    require_root();
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let mut c = Cluster::new(
        tag,
        bins,
        &[
            ("node1", &[OUTSIDE, GATEWAY]),
            ("node2", &["productpage", "kiali"]),
        ],
    )
    .unwrap();
    c.label_pod(OUTSIDE, &[("istio.io/dataplane-mode", "none")])
        .unwrap();
    c.label_pod(
        GATEWAY,
        &[
            ("istio.io/dataplane-mode", "none"),
            ("istio", "ingressgateway"),
        ],
    )
    .unwrap();
    c
}

fn services() -> String {
    [("productpage", "10.96.0.10", 9080), ("kiali", "10.96.0.11", 20001)]
        .iter()
        .map(|(name, vip, port)| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterIP: {vip}\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {port}\n"
            )
        })
        .collect()
}

fn start(c: &mut Cluster) {
    c.serve_http("productpage", "v1", 9080, &[]).unwrap();
    c.serve_http("kiali", "v1", 20001, &[]).unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    // The backends' own HBONE listeners (`<pod IP>:15008`, the gateway's
    // upstream) exist once node2's agent knows them; without this wait the
    // first request may find none (503, connection failure).
    c.wait_ready("node2", 4, &["productpage", "kiali"]).unwrap();
    c.start_gateway(GATEWAY).unwrap();
}

fn gateway_ip(c: &Cluster) -> Ipv4Addr {
    c.pod(GATEWAY).ip
}

/// `curl` from the pod outside the mesh until the gateway answers (its
/// listeners are bound once their xDS arrived): (status, body).
fn curl(c: &Cluster, args: &[&str]) -> (u16, String) {
    try_eventually("the gateway answering", Duration::from_secs(20), || {
        c.curl(OUTSIDE, args).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.gateway_log_tail(GATEWAY)))
}

/// `args` as `curl` takes them.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Which backend pod answered (podhttp names itself in its reply).
fn answered_by(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a podhttp reply ({e}): {body}"));
    v["pod"].as_str().unwrap_or_default().to_string()
}

#[test]
fn seed_gateways_route_plain_http_from_outside_the_mesh() {
    let mut c = cluster("igh");
    c.write_config("10-services.yaml", &services()).unwrap();
    // Two Gateways of the notes on port 80: `*` (bookinfo) and an exact
    // host (the addons); the exact host wins its requests.
    c.write_config("20-bookinfo.yaml", &seed("000-01.yaml"))
        .unwrap();
    c.write_config("21-addons.yaml", &seed("004-01.yaml"))
        .unwrap();
    start(&mut c);
    let gw = gateway_ip(&c);

    let (status, body) = curl(&c, &[&format!("http://{gw}/productpage")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(answered_by(&body), "productpage");

    let (status, body) = curl(
        &c,
        &[
            "-H",
            "Host: dashboard.test01-jeonj.io",
            &format!("http://{gw}/kiali/console"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(answered_by(&body), "kiali");

    // The exact host's routes only: /productpage is not among them.
    let (status, _) = curl(
        &c,
        &[
            "-H",
            "Host: dashboard.test01-jeonj.io",
            &format!("http://{gw}/productpage"),
        ],
    );
    assert_eq!(status, 404);
    // No route of the `*` host matches.
    let (status, _) = curl(&c, &[&format!("http://{gw}/elsewhere")]);
    assert_eq!(status, 404);
}

#[test]
fn an_authorization_policy_selecting_the_gateway_is_enforced_there() {
    let mut c = cluster("iga");
    c.write_config("10-services.yaml", &services()).unwrap();
    c.write_config("20-bookinfo.yaml", &seed("000-01.yaml"))
        .unwrap();
    // The gateway pod is in `default`, labelled istio=ingressgateway.
    c.write_config(
        "30-deny.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-productpage, namespace: default}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n  rules: [{to: [{operation: {paths: [/productpage]}}]}]\n",
    )
    .unwrap();
    start(&mut c);
    let gw = gateway_ip(&c);

    let (status, body) = curl(&c, &[&format!("http://{gw}/productpage")]);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body.trim(), "RBAC: access denied");
    // Another route of the same Gateway is not denied.
    let (status, body) = curl(&c, &[&format!("http://{gw}/api/v1/products")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(answered_by(&body), "productpage");
}

#[test]
fn https_picks_certificate_and_routes_by_sni_redirects_and_checks_clients() {
    let mut c = cluster("igs");
    let pki = Pki::new();
    let dir = c.config_dir().parent().unwrap().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    pki.write_ca(&ca);
    let (a_crt, a_key) = pki.leaf(&dir, "a", &["a.example.com"]);
    let (b_crt, b_key) = pki.leaf(&dir, "b", &["b.example.com"]);
    let (m_crt, m_key) = pki.leaf(&dir, "m", &["m.example.com"]);
    let (client_crt, client_key) = pki.leaf(&dir, "client", &["client.example.com"]);
    let ca_path = ca.display().to_string();
    // The notes' HTTPS Gateway (seed 003-01) names fixed files and selects
    // `app: my-gateway-controller`; its VirtualService (003-02) has no
    // routes, so its host answers 404 once TLS is through.
    let _fixed = Written(vec!["/tmp/tls.crt", "/tmp/tls.key"]);
    pki.leaf_at(
        Path::new("/tmp/tls.crt"),
        Path::new("/tmp/tls.key"),
        &["ext-host.example.com"],
    );
    c.label_pod(GATEWAY, &[("app", "my-gateway-controller")])
        .unwrap();
    c.write_config("21-ext-host-gateway.yaml", &seed("003-01.yaml"))
        .unwrap();
    c.write_config("22-ext-host-vs.yaml", &seed("003-02.yaml"))
        .unwrap();
    c.write_config("10-services.yaml", &services()).unwrap();
    c.write_config(
        "20-edge.yaml",
        &format!(
            r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {{number: 443, name: https-a, protocol: HTTPS}}
    hosts: [a.example.com]
    tls: {{mode: SIMPLE, serverCertificate: {a_crt}, privateKey: {a_key}}}
  - port: {{number: 443, name: https-b, protocol: HTTPS}}
    hosts: [b.example.com]
    tls: {{mode: SIMPLE, serverCertificate: {b_crt}, privateKey: {b_key}}}
  - port: {{number: 8443, name: https-m, protocol: HTTPS}}
    hosts: [m.example.com]
    tls: {{mode: MUTUAL, serverCertificate: {m_crt}, privateKey: {m_key}, caCertificates: {ca_path}}}
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [a.example.com]
    tls: {{httpsRedirect: true}}
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
    - destination: {{host: productpage, port: {{number: 9080}}}}
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
    - destination: {{host: kiali.default.svc.cluster.local, port: {{number: 20001}}}}
"#
        ),
    )
    .unwrap();
    start(&mut c);
    let gw = gateway_ip(&c);
    let resolve = |host: &str, port: u16| format!("{host}:{port}:{gw}");
    // curl arguments for `https://host[:port]/path` at the gateway, the
    // certificate checked against the test CA.
    let https = |host: &str, port: u16, path: &str, extra: &[&str]| -> Vec<String> {
        let authority = if port == 443 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        let mut args: Vec<String> = vec!["--cacert".into(), ca_path.clone()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend([
            "--resolve".into(),
            resolve(host, port),
            format!("https://{authority}{path}"),
        ]);
        args
    };

    // SNI a.example.com: A's certificate (curl checks the SAN), A's routes.
    let (status, body) = curl(&c, &strs(&https("a.example.com", 443, "/productpage", &[])));
    assert_eq!(status, 200, "{body}");
    assert_eq!(answered_by(&body), "productpage");
    // SNI b.example.com: B's certificate and routes.
    let (status, body) = curl(&c, &strs(&https("b.example.com", 443, "/", &[])));
    assert_eq!(status, 200, "{body}");
    assert_eq!(answered_by(&body), "kiali");
    // The notes' Gateway: its certificate (SAN ext-host.example.com) on the
    // same port, its VirtualService binds the host without routes.
    let (status, body) = curl(&c, &strs(&https("ext-host.example.com", 443, "/", &[])));
    assert_eq!(status, 404, "{body}");
    // A name no server has: no certificate, no handshake.
    let unknown = c.curl(OUTSIDE, &strs(&https("c.example.com", 443, "/", &[])));
    assert!(unknown.is_err(), "{unknown:?}");

    // httpsRedirect: 301 to the same host and path over https.
    let (status, headers) = curl(
        &c,
        &[
            "-D",
            "-",
            "--resolve",
            &resolve("a.example.com", 80),
            "http://a.example.com/productpage?x=1",
        ],
    );
    assert_eq!(status, 301, "{headers}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("location: https://a.example.com/productpage?x=1"),
        "{headers}"
    );

    // MUTUAL: no client certificate, no request; a CA-signed one, routed.
    let anonymous = c.curl(
        OUTSIDE,
        &strs(&https("m.example.com", 8443, "/productpage", &[])),
    );
    match anonymous {
        Err(_) => {}
        Ok((status, body)) => panic!("served without a client certificate: {status} {body}"),
    }
    let (status, body) = curl(
        &c,
        &strs(&https(
            "m.example.com",
            8443,
            "/productpage",
            &["--cert", &client_crt, "--key", &client_key],
        )),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(answered_by(&body), "productpage");
}

/// `openssl s_server` in a pod's network namespace, killed on drop.
struct OpensslServer(std::process::Child);

impl OpensslServer {
    fn start(c: &Cluster, pod: &str, port: u16, crt: &str, key: &str) -> Self {
        let netns = c.pod(pod).netns.path();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["openssl", "s_server", "-quiet", "-www", "-accept"])
            .arg(port.to_string())
            .args(["-cert", crt, "-key", key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting openssl s_server");
        OpensslServer(child)
    }
}

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tcp_and_tls_passthrough_servers_relay_to_mesh_pods() {
    require_root();
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let mut c = Cluster::new(
        "igt",
        bins,
        &[
            ("node1", &[OUTSIDE, GATEWAY, "other"]),
            ("node2", &["echo", "secure"]),
        ],
    )
    .unwrap();
    c.label_pod(OUTSIDE, &[("istio.io/dataplane-mode", "none")])
        .unwrap();
    c.label_pod(
        GATEWAY,
        &[
            ("istio.io/dataplane-mode", "none"),
            ("istio", "ingressgateway"),
        ],
    )
    .unwrap();
    let pki = Pki::new();
    let dir = c.config_dir().parent().unwrap().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    pki.write_ca(&ca);
    let ca_path = ca.display().to_string();
    let (s_crt, s_key) = pki.leaf(&dir, "secure", &["secure.example.com"]);
    c.write_config(
        "10-services.yaml",
        &[("echo", "10.96.0.20", 9000), ("secure", "10.96.0.21", 8443)]
            .iter()
            .map(|(name, vip, port)| {
                format!(
                    "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {name}}}\n  ports: [{{name: tcp, port: {port}, targetPort: {port}}}]\n"
                )
            })
            .collect::<String>(),
    )
    .unwrap();
    // Only the gateway's identity may reach the echo pod: it is reached
    // over HBONE as the gateway, never in plain text.
    c.write_config(
        "20-l4.yaml",
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: l4, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: ["*"]}
  - {port: {number: 443, name: tls, protocol: TLS}, hosts: ["*.example.com"], tls: {mode: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: l4, namespace: default}
spec:
  hosts: ["*"]
  gateways: [l4]
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: echo, port: {number: 9000}}}]
  tls:
  - match: [{sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure, port: {number: 8443}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-only, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/gateway"]}}]
"#,
    )
    .unwrap();
    c.serve("echo", 9000, None).unwrap();
    let _secure = OpensslServer::start(&c, "secure", 8443, &s_crt, &s_key);
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.start_gateway(GATEWAY).unwrap();
    let gw = gateway_ip(&c);

    // TCP: bytes from outside the mesh come back intact through the
    // gateway, which reached the echo pod over HBONE as itself.
    let to = format!("{gw}:9000");
    let out = try_eventually(
        "an echo through the gateway",
        Duration::from_secs(20),
        || {
            let out = c
                .client(OUTSIDE, &["echo", "--to", &to, "--bytes", "100000"])
                .map_err(|e| e.to_string())?;
            if out["received"] == 100000 {
                Ok(out)
            } else {
                Err(format!("{out}"))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.gateway_log_tail(GATEWAY)));
    assert_eq!(out["sent_sha256"], out["received_sha256"], "{out}");
    // Another mesh identity is refused by the same policy.
    let other = c.client(
        "other",
        &["probe", "--to", &c.pod("echo").addr(9000).to_string()],
    );
    assert_eq!(
        other.as_ref().map(|o| o["ok"].clone()).ok(),
        Some(serde_json::Value::Bool(false)),
        "{other:?}"
    );

    // PASSTHROUGH: curl's handshake is with the pod's own server (its
    // certificate, checked against the test CA); the gateway holds none.
    let (status, body) = curl(
        &c,
        &[
            "--cacert",
            &ca_path,
            "--resolve",
            &format!("secure.example.com:443:{gw}"),
            "https://secure.example.com/",
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("s_server"), "{body}");
    // An SNI no route names: closed, no handshake.
    let unknown = c.curl(
        OUTSIDE,
        &[
            "--cacert",
            &ca_path,
            "--resolve",
            &format!("other.example.com:443:{gw}"),
            "https://other.example.com/",
        ],
    );
    assert!(unknown.is_err(), "{unknown:?}");

    // The gateway's admin shows both listeners with their chains.
    let meshctl = c.bins.agent.with_file_name("meshctl");
    let out = std::process::Command::new(&meshctl)
        .args([
            "proxy-config",
            "listener",
            &c.pod(GATEWAY).netns.name,
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("outbound|9000||echo.default.svc.cluster.local"),
        "{text}"
    );
    assert!(text.contains("secure.example.com"), "{text}");
}
