//! Egress through a waypoint end to end: Istio's TLS-origination shape
//! (a ServiceEntry of `edition.example.test`, port 80 → target port 443,
//! `resolution: DNS`, bound to the waypoint; a DestinationRule with
//! `tls: SIMPLE` on port 80) plus a VirtualService with a timeout and
//! retries on the host. An "external" network namespace runs `dnsmasq`
//! (answering the host with its own address) and an HTTPS server (Python's
//! `ssl`, a certificate from a test CA) that reports the SNI it saw.
//!
//! pod `a` (node1) → VIP:80 → agent → HBONE → mesh-waypoint (node2) →
//! DNS through dnsmasq (`--dns-upstream`) → TLS originated to
//! `external:443`. Checked: the answer and the SNI, the VirtualService's
//! retries (a flaky path answers 503 every other time) and timeout (504),
//! and the waypoint's `istio_requests_total{destination_service=<host>}`.
//! Needs root, `dnsmasq` and `python3`.
use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Child, Command, Stdio},
    time::Duration,
};

use mesh_e2e::{
    bins::Binaries,
    cluster::{node_ip, Cluster, CONTROL_IP},
    dnsmasq::Dnsmasq,
    envoy::WaypointNode,
    netns::Netns,
    waypoint::{MeshWaypoint, WaypointSpec},
};
use mesh_testkit::eventually;

const TAG: &str = "mew";
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 201);
const HOST: &str = "edition.example.test";

fn config(ca_file: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: edition
  namespace: default
  labels: {{istio.io/use-waypoint: waypoint}}
spec:
  hosts: [{HOST}]
  ports:
  - {{number: 80, name: http-port, protocol: HTTP, targetPort: 443}}
  - {{number: 443, name: https-port, protocol: HTTPS}}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: edition, namespace: default}}
spec:
  host: {HOST}
  trafficPolicy:
    portLevelSettings:
    - port: {{number: 80}}
      tls: {{mode: SIMPLE, caCertificates: {ca_file}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edition, namespace: default}}
spec:
  hosts: [{HOST}]
  http:
  - match: [{{uri: {{prefix: /slow}}}}]
    timeout: 1s
    route: [{{destination: {{host: {HOST}}}}}]
  - retries: {{attempts: 3, retryOn: 5xx}}
    route: [{{destination: {{host: {HOST}}}}}]
"
    )
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        mesh_e2e::cmd::terminate(&mut self.0);
    }
}

fn dnsmasq(netns: &Netns) -> Dnsmasq {
    let args = [
        format!("--address=/{HOST}/{EXTERNAL}"),
        "--local-ttl=5".to_string(),
    ];
    Dnsmasq::start(&netns.name, EXTERNAL, &args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// HTTPS on EXTERNAL:443: `/slow` answers after 3 s, `/flaky` 503 every
/// other time, everything `edition-ok sni=<the SNI>`.
const SERVER: &str = r#"
import http.server, ssl, sys, time
cert, key, ip = sys.argv[1], sys.argv[2], sys.argv[3]
seen = []
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.sni_callback = lambda sock, name, c: seen.append(name or "")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    flaky = 0
    def do_GET(self):
        code = 200
        if self.path.startswith("/slow"):
            time.sleep(3)
        if self.path.startswith("/flaky"):
            H.flaky += 1
            code = 503 if H.flaky % 2 == 1 else 200
        body = ("edition-ok sni=%s" % (seen[-1] if seen else "")).encode()
        self.send_response(code)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer((ip, 443), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

fn https(netns: &Netns, cert: &str, key: &str) -> Guard {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns.name,
            "python3",
            "-c",
            SERVER,
            cert,
            key,
        ])
        .arg(EXTERNAL.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting python3");
    Guard(child)
}

/// `(ca pem, leaf pem, key pem)` for HOST.
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "egress test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![HOST.to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// The VIP:port of `key` on `port` in node1's agent view.
fn vip(c: &Cluster, key: &str, port: u16) -> SocketAddr {
    let what = format!("the agent's view has service {key}:{port}");
    eventually(&what, Duration::from_secs(30), || {
        let dump = c.agent("node1").admin_json("/config_dump").unwrap();
        dump["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["key"] == key)
            .filter_map(|s| s["vip"].as_str()?.parse::<SocketAddr>().ok())
            .find(|vip| vip.port() == port)
            .ok_or(dump)
    })
}

fn start_waypoint(c: &mut Cluster, pod: &str, extra: &[&str]) {
    let p = c.pod(pod);
    let node = WaypointNode {
        pod_ip: p.ip.into(),
        pod_name: pod.to_string(),
        namespace: c.namespace_of(pod).to_string(),
        waypoint: "waypoint".to_string(),
    };
    let mut spec = WaypointSpec::new(node, pod, SocketAddr::from((CONTROL_IP, 15010)));
    spec.extra = extra.iter().map(|s| s.to_string()).collect();
    let netns = p.netns.path();
    let dir = c.dir.join(format!("waypoint-{pod}"));
    let mut wp = MeshWaypoint::start(&c.bins.waypoint, spec, Some(&netns), &dir).unwrap();
    wp.wait_ready(Duration::from_secs(30)).unwrap();
    c.waypoints.push(wp);
}

#[test]
fn a_service_entry_behind_a_waypoint_gets_dns_tls_origination_and_its_routes() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["waypoint"])],
    )
    .unwrap();
    c.declare_waypoint("waypoint", "waypoint").unwrap();
    let (ca, leaf, key) = certificates();
    let files = c.dir.join("egress");
    std::fs::create_dir_all(&files).unwrap();
    let write = |name: &str, pem: &str| {
        let path = files.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (ca_file, cert_file, key_file) = (
        write("ca.pem", &ca),
        write("tls.crt", &leaf),
        write("tls.key", &key),
    );
    c.write_config("10-edition.yaml", &config(&ca_file))
        .unwrap();

    let external = c.add_external("ext", EXTERNAL).unwrap();
    // The way back to the pods (the waypoint's connections).
    external
        .exec(&[
            "route",
            "add",
            "10.244.0.0/16",
            "via",
            &node_ip(2).to_string(),
        ])
        .unwrap();
    let _dns = dnsmasq(&external);
    let _https = https(&external, &cert_file, &key_file);

    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.wait_ready("node1", 1, &["a"]).unwrap();
    let upstream = format!("{EXTERNAL}:53");
    start_waypoint(&mut c, "waypoint", &["--dns-upstream", &upstream]);
    let target = vip(&c, &format!("default/{HOST}"), 80);
    let url = |path: &str| format!("http://{target}{path}");
    let host = format!("host: {HOST}");

    // Plain HTTP from the pod; the waypoint resolves the host and
    // originates TLS with the host as SNI.
    let (status, body) = eventually(
        "the host through the waypoint",
        Duration::from_secs(30),
        || match c.curl("a", &["-H", &host, &url("/")]) {
            Ok((200, body)) => Ok((200, body)),
            other => Err(format!("{other:?}\n{}", c.gateway_log_tail("waypoint"))),
        },
    );
    assert_eq!(
        (status, body.as_str()),
        (200, format!("edition-ok sni={HOST}").as_str())
    );

    // The VirtualService's retries: a 503 every other time is retried.
    for _ in 0..4 {
        let (status, _) = c.curl("a", &["-H", &host, &url("/flaky")]).unwrap();
        assert_eq!(status, 200);
    }
    // …and its timeout.
    let (status, _) = c.curl("a", &["-H", &host, &url("/slow")]).unwrap();
    assert_eq!(status, 504);

    let metrics = eventually(
        "the waypoint's request metrics",
        Duration::from_secs(10),
        || {
            let text = c.waypoints[0].metrics_text().unwrap_or_default();
            let found = text.lines().any(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains(&format!("destination_service=\"{HOST}\""))
                    && l.contains(&format!("destination_service_name=\"{HOST}\""))
                    && l.contains("destination_service_namespace=\"default\"")
                    && l.contains("response_code=\"200\"")
            });
            if found {
                Ok(text)
            } else {
                Err(text)
            }
        },
    );
    assert!(
        metrics.contains("response_code=\"504\""),
        "no 504 recorded:\n{metrics}"
    );
    let dump = c.waypoints[0].config_dump().unwrap();
    let cluster = format!("outbound|80||{HOST}");
    let endpoints: Vec<&str> = dump["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["cluster"] == cluster.as_str())
        .filter_map(|e| e["address"].as_str())
        .collect();
    assert_eq!(endpoints, [format!("{EXTERNAL}:443")], "{dump:#}");
    let _ = std::fs::remove_dir_all(&files);
}
