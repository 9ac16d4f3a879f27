//! Egress to ServiceEntry hosts end to end: an "external" network
//! namespace outside the cluster runs `dnsmasq` (answering
//! `www.googleapis.com` and `api.external.test` with its own address) and
//! two HTTP servers; the control plane reads the course's seed
//! ServiceEntry (DNS, `exportTo: "."`) as written plus a STATIC entry; the
//! agent resolves through that dnsmasq (`--dns-upstream`). A pod of
//! `default` reaches both hosts through their VIPs and the agent's DNS
//! proxy answers those VIPs (asked directly on port 15053, and through the
//! capture of the pod's port-53 queries); a pod of another namespace sees
//! neither the DNS entry's VIP nor its name; a source that is no pod is
//! refused. Also: a DNS endpoint follows its record once the TTL lapses
//! (dnsmasq's hosts file rewritten, SIGHUP); with the agent down an
//! enrolled pod's DNS fails at once while a pod outside the mesh still
//! resolves; a pod reaches an entry's host by name through the captured
//! resolver (`curl http://<host>/`). Needs root, python3 and Debian's
//! `dnsmasq`.
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use mesh_e2e::{
    bins::Binaries, cluster::Cluster, dnsmasq::Dnsmasq, hosts::HostsFile, netns::Netns,
    node::NodeNet,
};
use mesh_testkit::eventually;
use serde_json::Value;

const TAG: &str = "meg";
/// The external namespace's address on the underlay.
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
/// The seed file, unmodified.
const SEED: &str = include_str!("../../mesh-control/tests/data/seeds/000-02.yaml");
const STATIC_ENTRY: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: external-api
  namespace: default
spec:
  hosts:
  - api.external.test
  location: MESH_EXTERNAL
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 10.0.0.200
    ports:
      http: 8080
";

/// Answers the seed's and the STATIC entry's hosts with [`EXTERNAL`].
fn start_dnsmasq(netns: &Netns) -> Dnsmasq {
    let args = [
        format!("--address=/www.googleapis.com/{EXTERNAL}"),
        format!("--address=/api.external.test/{EXTERNAL}"),
        "--local-ttl=60".to_string(),
    ];
    start_dnsmasq_with(netns, &args, "www.googleapis.com")
}

/// dnsmasq on [`EXTERNAL`]:53 with `args`, ready once it answers `probe`.
fn start_dnsmasq_with(netns: &Netns, args: &[String], probe: &str) -> Dnsmasq {
    let dnsmasq = Dnsmasq::start(&netns.name, EXTERNAL, args).unwrap_or_else(|e| panic!("{e:#}"));
    eventually("dnsmasq answering", Duration::from_secs(10), || {
        let socket = mesh_e2e::netns::bind_udp_in(&netns.path(), "0.0.0.0:0".parse().unwrap())
            .map_err(|e| e.to_string())?;
        ask(&socket, SocketAddr::from((EXTERNAL, 53)), probe)
            .filter(|a| !a.addresses.is_empty())
            .ok_or_else(|| "no answer yet".to_string())
    });
    dnsmasq
}

/// An HTTP/1.0 server answering every request with `body`, in `netns`
/// on `addr`; stopped on drop.
struct HttpServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    fn start(netns: &Path, addr: SocketAddr, body: &'static str) -> Self {
        let file = std::fs::File::open(netns).unwrap();
        let listener = std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                TcpListener::bind(addr)
            })
            .join()
            .unwrap()
        })
        .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let mut buf = [0u8; 2048];
                        let _ = conn.read(&mut buf);
                        let _ = write!(
                            conn,
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An A query for `name` (id 0x5151, RD).
fn a_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x51, 0x51, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).unwrap());
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A DNS answer's response code and A records.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    rcode: u8,
    addresses: Vec<Ipv4Addr>,
}

/// Skips a (possibly compressed) name at `at`; the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        if len & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1;
        if len == 0 {
            return Some(at);
        }
        at += usize::from(len);
    }
}

fn parse(msg: &[u8]) -> Option<Answer> {
    let word = |at: usize| Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]));
    if msg.len() < 12 || msg[..2] != [0x51, 0x51] {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    let (questions, answers) = (word(4)?, word(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut addresses = vec![];
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let (kind, len) = (word(at)?, usize::from(word(at + 8)?));
        at += 10;
        let data = msg.get(at..at + len)?;
        if kind == 1 && len == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += len;
    }
    Some(Answer { rcode, addresses })
}

/// Asks `server` for `name`'s A records from `socket`.
fn ask(socket: &UdpSocket, server: SocketAddr, name: &str) -> Option<Answer> {
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send_to(&a_query(name), server).ok()?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).ok()?;
    parse(&buf[..n])
}

/// Asks the agent's DNS proxy of node1 from inside `netns`.
fn ask_agent(netns: &Path, name: &str) -> Answer {
    let socket = mesh_e2e::netns::bind_udp_in(netns, "0.0.0.0:0".parse().unwrap()).unwrap();
    let agent = SocketAddr::from((NodeNet::bridge_ip(1), 15053));
    ask(&socket, agent, name)
        .unwrap_or_else(|| panic!("the agent's DNS proxy did not answer {name}"))
}

/// The VIP:port of service `key` on `port` in the agent's view.
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

/// The value of `name{labels}` in an exposition, summed.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn wait_metric(c: &Cluster, name: &str, labels: &[(&str, &str)]) -> String {
    let what = format!("{name}{labels:?} on node1");
    eventually(&what, Duration::from_secs(10), || {
        let text = c.agent("node1").metrics_text().unwrap();
        if sample(&text, name, labels) >= 1.0 {
            Ok(text)
        } else {
            Err(text)
        }
    })
}

#[test]
fn service_entry_hosts_are_routed_resolved_scoped_and_served_by_dns() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a", "x"])],
    )
    .unwrap();
    c.move_pods("other", &["x"]).unwrap();
    c.write_config("10-googleapis.yaml", SEED).unwrap();
    c.write_config("11-external-api.yaml", STATIC_ENTRY)
        .unwrap();
    let external = c.add_external("ext", EXTERNAL).unwrap();
    let _dns = start_dnsmasq(&external);
    let _google = HttpServer::start(&external.path(), (EXTERNAL, 80).into(), "googleapis-ok");
    let _static = HttpServer::start(&external.path(), (EXTERNAL, 8080).into(), "static-ok");
    c.start_control(&[]).unwrap();
    let upstream = format!("{EXTERNAL}:53");
    c.start_agent("node1", &["--dns-upstream", &upstream])
        .unwrap();
    c.wait_ready("node1", 2, &["a"]).unwrap();
    let google = vip(&c, "default/www.googleapis.com", 80);
    let api = vip(&c, "default/api.external.test", 80);

    // DNS resolution: the agent resolves the host through dnsmasq.
    let (status, body) = c.curl("a", &[&format!("http://{google}/")]).unwrap();
    assert_eq!((status, body.as_str()), (200, "googleapis-ok"));
    // STATIC: the endpoint address and its named port.
    let (status, body) = c.curl("a", &[&format!("http://{api}/")]).unwrap();
    assert_eq!((status, body.as_str()), (200, "static-ok"));

    let host = [
        ("reporter", "source"),
        ("destination_service", "www.googleapis.com"),
        ("destination_service_name", "www.googleapis.com"),
        ("destination_service_namespace", "default"),
        ("destination_workload", "unknown"),
        ("source_workload", "a"),
        ("response_flags", "-"),
    ];
    wait_metric(&c, "istio_tcp_connections_closed_total", &host);
    wait_metric(
        &c,
        "istio_tcp_connections_closed_total",
        &[("destination_service", "api.external.test")],
    );
    // Where the agent connected: the resolved address, the named port.
    let recent = c.agent("node1").connections().unwrap();
    let upstream_of = |service: &str| -> Vec<String> {
        recent["recent"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["service"] == service)
            .map(|r| r["upstream"].as_str().unwrap_or("none").to_string())
            .collect()
    };
    assert_eq!(
        upstream_of("www.googleapis.com"),
        [format!("{EXTERNAL}:80")],
        "{recent}"
    );
    assert_eq!(
        upstream_of("api.external.test"),
        [format!("{EXTERNAL}:8080")],
        "{recent}"
    );

    // exportTo ".": the pod of `other` meets a plain address that leads
    // nowhere, and the agent names no service for it.
    let refused = c.curl("x", &[&format!("http://{google}/")]);
    assert!(
        refused.is_err(),
        "reached the entry from another namespace: {refused:?}"
    );
    let x_source = format!("{}:", c.pod("x").ip);
    let from_x: Vec<Value> = eventually(
        "a record of x's connection",
        Duration::from_secs(10),
        || {
            let recent = c.agent("node1").connections().unwrap();
            let found: Vec<Value> = recent["recent"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| {
                    r["source"]
                        .as_str()
                        .is_some_and(|s| s.starts_with(&x_source))
                })
                .cloned()
                .collect();
            if found.is_empty() {
                Err(recent)
            } else {
                Ok(found)
            }
        },
    );
    for record in &from_x {
        assert_eq!(record["service"], "unknown", "{record}");
        assert_eq!(record["route"], "passthrough", "{record}");
    }
    // The STATIC entry is exported everywhere.
    let (status, body) = c.curl("x", &[&format!("http://{api}/")]).unwrap();
    assert_eq!((status, body.as_str()), (200, "static-ok"));

    // The agent's DNS proxy: the VIPs for the pod that sees the entries…
    let a_netns = c.pod("a").netns.path();
    let answer = ask_agent(&a_netns, "www.googleapis.com");
    assert_eq!(
        (answer.rcode, answer.addresses.as_slice()),
        (0, &[ip4(google)][..])
    );
    let answer = ask_agent(&a_netns, "api.external.test");
    assert_eq!(answer.addresses, [ip4(api)]);
    // …the real address (forwarded to dnsmasq) for the one that does not…
    let answer = ask_agent(&c.pod("x").netns.path(), "www.googleapis.com");
    assert_eq!(
        (answer.rcode, answer.addresses.as_slice()),
        (0, &[EXTERNAL][..])
    );
    // …and REFUSED for an address that is no pod.
    let answer = ask_agent(&c.underlay.path(), "www.googleapis.com");
    assert_eq!(answer.rcode, 5, "REFUSED: {answer:?}");
    assert!(answer.addresses.is_empty());
    // Through the capture: the pod asks its resolver (dnsmasq, port 53) as
    // any program does; the kernel hands the query to the agent, whose
    // answer (the VIP) comes back from the resolver's address.
    let (answer, from) = ask_from_pod(&c, "a", "www.googleapis.com");
    assert_eq!(answer.addresses, [ip4(google)], "{answer:?}");
    assert_eq!(from, SocketAddr::from((EXTERNAL, 53)));
    let text = c.agent("node1").metrics_text().unwrap();
    for outcome in ["answered", "forwarded", "refused"] {
        assert!(
            sample(
                &text,
                "mesh_agent_dns_requests_total",
                &[("outcome", outcome)]
            ) >= 1.0,
            "{outcome}:\n{text}"
        );
    }
}

/// A UDP query for `name` to the external resolver (port 53) by a process
/// of `pod` (its cgroup and network namespace, so the capture applies):
/// the answer and the address it came from.
fn ask_from_pod(c: &Cluster, pod: &str, name: &str) -> (Answer, SocketAddr) {
    const SCRIPT: &str = r#"
query, host = bytes.fromhex(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(query, (host, 53))
data, source = s.recvfrom(1500)
out(answer=data.hex(), source="%s:%d" % source)
"#;
    let query: String = a_query(name).iter().map(|b| format!("{b:02x}")).collect();
    let out = mesh_e2e::pysock::run(c.pod(pod), SCRIPT, &[&query, &EXTERNAL.to_string()]).unwrap();
    let hex = out["answer"].as_str().unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let answer = parse(&bytes).unwrap_or_else(|| panic!("unreadable answer: {out}"));
    (answer, out["source"].as_str().unwrap().parse().unwrap())
}

fn ip4(addr: SocketAddr) -> Ipv4Addr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("not IPv4: {other}"),
    }
}

/// A second external server's address (same namespace as [`EXTERNAL`]).
const SERVER_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 202);

/// A `resolution: DNS` ServiceEntry of `host`, port 80, in `default`.
fn dns_entry(name: &str, host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: {name}
  namespace: default
spec:
  hosts:
  - {host}
  location: MESH_EXTERNAL
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
"
    )
}

/// The cluster of node1 with `pods`, `yaml` in the control plane's
/// directory and the external namespace (not yet serving anything).
fn cluster_with_external(pods: &[&str], yaml: &str) -> (Cluster, Netns) {
    let c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", pods)],
    )
    .unwrap();
    c.write_config("10-entry.yaml", yaml).unwrap();
    let external = c.add_external("ext", EXTERNAL).unwrap();
    (c, external)
}

/// Starts the control plane and node1's agent (resolving through the
/// external dnsmasq), and waits for `enrolled` pods' identities.
fn start_mesh(c: &mut Cluster, workloads: usize, enrolled: &[&str]) {
    c.start_control(&[]).unwrap();
    start_agent(c);
    c.wait_ready("node1", workloads, enrolled).unwrap();
}

fn start_agent(c: &mut Cluster) {
    let upstream = format!("{EXTERNAL}:53");
    c.start_agent("node1", &["--dns-upstream", &upstream])
        .unwrap();
}

/// The upstream (`ip:port`) of the most recent connection to `service`.
fn last_upstream(c: &Cluster, service: &str) -> Option<String> {
    let recent = c.agent("node1").connections().unwrap();
    recent["recent"]
        .as_array()?
        .iter()
        .rfind(|r| r["service"] == service)
        .and_then(|r| r["upstream"].as_str().map(str::to_string))
}

#[test]
fn a_dns_endpoint_follows_its_record_once_the_ttl_lapses() {
    mesh_e2e::require_root();
    const HOST: &str = "moving.external.test";
    let (mut c, external) = cluster_with_external(&["a"], &dns_entry("moving", HOST));
    external
        .exec(&["addr", "add", &format!("{SERVER_B}/24"), "dev", "eth0"])
        .unwrap();
    // The record comes from a hosts file dnsmasq reads again on SIGHUP,
    // answered with a one-second TTL.
    let hosts = c.dir.join("external-hosts");
    std::fs::write(&hosts, format!("{EXTERNAL} {HOST}\n")).unwrap();
    let dns = start_dnsmasq_with(
        &external,
        &[
            "--local-ttl=1".to_string(),
            format!("--addn-hosts={}", hosts.display()),
        ],
        HOST,
    );
    let _a = HttpServer::start(&external.path(), (EXTERNAL, 80).into(), "server-a");
    let _b = HttpServer::start(&external.path(), (SERVER_B, 80).into(), "server-b");
    start_mesh(&mut c, 1, &["a"]);
    let url = format!("http://{}/", vip(&c, &format!("default/{HOST}"), 80));

    let (status, body) = c.curl("a", &[&url]).unwrap();
    assert_eq!((status, body.as_str()), (200, "server-a"));
    assert_eq!(
        last_upstream(&c, HOST),
        Some(format!("{EXTERNAL}:80")),
        "{}",
        c.agent("node1").connections().unwrap()
    );

    // The record moves to B; the agent's cached answer lapses after 1 s.
    std::fs::write(&hosts, format!("{SERVER_B} {HOST}\n")).unwrap();
    dns.reload().unwrap();
    eventually(
        "new connections to the VIP reach server B",
        Duration::from_secs(10),
        || match c.curl("a", &[&url]) {
            Ok((200, body)) if body == "server-b" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(last_upstream(&c, HOST), Some(format!("{SERVER_B}:80")));
}

/// A connected UDP query for `name` to `server`:53 from `pod` (3 s
/// timeout): `{"answer": hex, "peer": …}` or `{"error": errno name}`, with
/// the seconds it took.
fn connected_query(c: &Cluster, pod: &str, server: Ipv4Addr, name: &str) -> Value {
    const SCRIPT: &str = r#"
import time
query, host = bytes.fromhex(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
start = time.monotonic()
try:
    s.connect((host, 53))
    s.send(query)
    data = s.recv(1500)
    out(answer=data.hex(), peer="%s:%d" % s.getpeername(), seconds=time.monotonic() - start)
except socket.timeout:
    out(error="timeout", seconds=time.monotonic() - start)
except OSError as e:
    out(error=errno.errorcode.get(e.errno, str(e.errno)), seconds=time.monotonic() - start)
"#;
    let query: String = a_query(name).iter().map(|b| format!("{b:02x}")).collect();
    mesh_e2e::pysock::run(c.pod(pod), SCRIPT, &[&query, &server.to_string()]).unwrap()
}

/// The A records of a [`connected_query`] result.
fn answered(out: &Value) -> Vec<Ipv4Addr> {
    let hex = out["answer"]
        .as_str()
        .unwrap_or_else(|| panic!("no answer: {out}"));
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    parse(&bytes)
        .unwrap_or_else(|| panic!("unreadable answer: {out}"))
        .addresses
}

#[test]
fn with_the_agent_down_an_enrolled_pods_dns_fails_fast_and_other_pods_resolve() {
    mesh_e2e::require_root();
    let (mut c, external) = cluster_with_external(&["a", "n"], SEED);
    c.label_pod("n", &[("istio.io/dataplane-mode", "none")])
        .unwrap();
    // The way back to node1's pods, for `n`, which asks dnsmasq itself.
    external
        .exec(&["route", "add", "10.244.1.0/24", "via", "10.0.0.1"])
        .unwrap();
    let _dns = start_dnsmasq(&external);
    start_mesh(&mut c, 2, &["a"]);
    let google = ip4(vip(&c, "default/www.googleapis.com", 80));

    // The agent up: `a` is answered by it (the VIP, from the resolver's
    // address); `n`, not captured, by dnsmasq.
    let a = connected_query(&c, "a", EXTERNAL, "www.googleapis.com");
    assert_eq!(answered(&a), [google], "{a}");
    assert_eq!(a["peer"], format!("{EXTERNAL}:53"), "{a}");
    let n = connected_query(&c, "n", EXTERNAL, "www.googleapis.com");
    assert_eq!(answered(&n), [EXTERNAL], "{n}");

    // The agent down (its programs stay attached): `a`'s query meets the
    // closed DNS proxy port and fails at once; `n` resolves as before.
    c.stop_agent("node1");
    let a = connected_query(&c, "a", EXTERNAL, "www.googleapis.com");
    assert_eq!(a["error"], "ECONNREFUSED", "{a}");
    assert!(a["seconds"].as_f64().unwrap() < 1.0, "not fast: {a}");
    let n = connected_query(&c, "n", EXTERNAL, "www.googleapis.com");
    assert_eq!(answered(&n), [EXTERNAL], "{n}");

    // Back up: the agent answers `a` again.
    start_agent(&mut c);
    eventually(
        "the restarted agent answers a",
        Duration::from_secs(20),
        || {
            let a = connected_query(&c, "a", EXTERNAL, "www.googleapis.com");
            if a["answer"].is_string() && answered(&a) == [google] {
                Ok(())
            } else {
                Err(a)
            }
        },
    );
}

#[test]
fn a_pod_reaches_a_service_entry_host_by_name_through_the_captured_resolver() {
    mesh_e2e::require_root();
    const HOST: &str = "byname.external.test";
    let (mut c, external) = cluster_with_external(&["a"], &dns_entry("byname", HOST));
    let _dns = start_dnsmasq_with(&external, &[format!("--address=/{HOST}/{EXTERNAL}")], HOST);
    let _server = HttpServer::start(&external.path(), (EXTERNAL, 80).into(), "byname-ok");
    // The pod's resolver is dnsmasq, which it has no way back from: only
    // the kernel's redirect to the agent answers it.
    let netns = c.pod("a").netns.name.clone();
    c.hosts.push(HostsFile::write(&netns, &[]).unwrap());
    std::fs::write(
        Path::new("/etc/netns").join(&netns).join("resolv.conf"),
        format!("nameserver {EXTERNAL}\noptions timeout:2 attempts:1\n"),
    )
    .unwrap();
    start_mesh(&mut c, 1, &["a"]);
    vip(&c, &format!("default/{HOST}"), 80);

    let (status, body) = c.curl("a", &[&format!("http://{HOST}/")]).unwrap();
    assert_eq!((status, body.as_str()), (200, "byname-ok"));
    // Through the VIP: the agent named the entry and resolved its host.
    assert_eq!(
        last_upstream(&c, HOST),
        Some(format!("{EXTERNAL}:80")),
        "{}",
        c.agent("node1").connections().unwrap()
    );
    let text = c.agent("node1").metrics_text().unwrap();
    assert!(
        sample(
            &text,
            "mesh_agent_dns_requests_total",
            &[("outcome", "answered")]
        ) >= 1.0,
        "{text}"
    );
}
