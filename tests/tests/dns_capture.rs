//! DNS capture end to end: the real `mesh-agent install` attaches the eBPF
//! programs at a per-test cgroup root; an enrolled pod's UDP queries to a
//! resolver (a test responder in another namespace, port 53) reach a
//! responder bound where the agent's DNS proxy listens (node address,
//! port 15053), and the pod sees the answer as coming from the resolver it
//! asked. No agent daemon runs: the test's responder stands in for the
//! proxy. Needs root; each test builds its own topology.
use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use mesh_e2e::{
    bins::Binaries,
    bpftool, pysock,
    topology::{NODE_IP, NODE_IP6},
    Topology,
};
use serde_json::Value;

const TAG: &str = "mtdns";
/// `mesh_common::DNS_PROXY_PORT`.
const DNS_PROXY_PORT: u16 = 15053;
/// What the stand-in for the agent's proxy answers, and what the resolver does.
const PROXY_ANSWER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 15);
const RESOLVER_ANSWER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 53);
/// Indexes of `mesh_common::stat`.
const STAT_DNS_REDIRECTED: u32 = 10;
const STAT_DNS_REPLY_SOURCE_RESTORED: u32 = 11;
const DNS_PROGRAMS: [&str; 6] = [
    "mesh_dns_send4",
    "mesh_dns_recv4",
    "mesh_dns_peer4",
    "mesh_dns_send6",
    "mesh_dns_recv6",
    "mesh_dns_peer6",
];

/// A node with pods `a` (enrolled), `c` (not enrolled) and `dns` (holds
/// the resolver), capture installed, `a` enrolled.
struct Setup {
    topo: Topology,
    /// What `mesh-agent install` printed: the program states.
    installed: Value,
}

impl Setup {
    fn new() -> Self {
        mesh_e2e::require_root();
        let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
        let topo = Topology::new(TAG, bins, &["a", "c", "dns"]).unwrap();
        let installed = install(&topo);
        agent_cli(
            &topo,
            &[
                "enroll",
                "--netns",
                &topo.pod("a").netns.path().display().to_string(),
            ],
        );
        Self { topo, installed }
    }

    fn resolver_addr(&self) -> SocketAddr {
        self.topo.pod("dns").addr(53)
    }

    /// The real resolver, in pod `dns`'s namespace on port 53.
    fn resolver(&self) -> Responder {
        Responder::bind(
            &self.topo.pod("dns").netns.path(),
            self.resolver_addr(),
            RESOLVER_ANSWER,
        )
    }

    /// The stand-in for the agent's DNS proxy: node address, port 15053.
    fn proxy(&self) -> Responder {
        let addr = SocketAddr::from((NODE_IP, DNS_PROXY_PORT));
        Responder::bind(&self.topo.node.netns.path(), addr, PROXY_ANSWER)
    }

    /// The resolver and the proxy stand-in on the IPv6 addresses.
    fn resolver6(&self) -> Responder {
        let addr = self.topo.pod("dns").addr6(53);
        Responder::bind(&self.topo.pod("dns").netns.path(), addr, RESOLVER_ANSWER)
    }

    fn proxy6(&self) -> Responder {
        let addr = SocketAddr::from((NODE_IP6, DNS_PROXY_PORT));
        Responder::bind(&self.topo.node.netns.path(), addr, PROXY_ANSWER)
    }

    fn map(&self, name: &str) -> PathBuf {
        self.topo.pin_dir().join("maps").join(name)
    }

    fn counter(&self, index: u32) -> u64 {
        bpftool::percpu_sum(&self.map("capture_stats"), index).unwrap()
    }

    /// One DNS query for `name` from `pod` to the resolver, on an
    /// unconnected (`sendto`) or connected (`connect` + `send`) socket.
    fn query(&self, pod: &str, connected: bool, name: &str) -> Value {
        self.query_to(pod, connected, name, self.resolver_addr())
    }

    /// [`Self::query`] to `to`: its family picks the socket's.
    fn query_to(&self, pod: &str, connected: bool, name: &str, to: SocketAddr) -> Value {
        let mode = if connected {
            "connected"
        } else {
            "unconnected"
        };
        let (host, port) = (to.ip().to_string(), to.port().to_string());
        pysock::run(self.topo.pod(pod), QUERY, &[mode, &host, &port, name]).unwrap()
    }
}

/// `mesh-agent install` from the test (host namespace) for the topology's
/// instance and cgroup, as an agent with a control plane runs it (the DNS
/// proxy is on, so the kernel redirects DNS); its JSON output.
fn install(topo: &Topology) -> Value {
    install_with(topo, true)
}

/// `mesh-agent install`, with a control plane configured or not (without
/// one the agent serves no DNS, and pods' DNS must stay where it goes).
fn install_with(topo: &Topology, control_plane: bool) -> Value {
    let cgroup = topo.cgroup_root().display().to_string();
    // Never dialled by `install`; it only decides whether DNS is served.
    let instance = topo.pin_dir().file_name().unwrap().to_owned();
    let bundle_path = std::env::temp_dir()
        .join(instance)
        .with_extension("trust-bundle.pem");
    std::fs::write(&bundle_path, "").unwrap();
    let bundle = bundle_path.display().to_string();
    let (ipv4, ipv6) = (NODE_IP.to_string(), NODE_IP6.to_string());
    let mut args = vec![
        "install",
        "--cgroup-root",
        &cgroup,
        "--redirect-ipv4",
        &ipv4,
        "--redirect-ipv6",
        &ipv6,
    ];
    if control_plane {
        args.extend([
            "--xds-addr",
            "http://192.0.2.1:15010",
            "--trust-bundle",
            &bundle,
        ]);
    }
    let out = agent_cli(topo, &args);
    let _ = std::fs::remove_file(&bundle_path);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("install printed {out:?}: {e}"))
}

fn agent_cli(topo: &Topology, args: &[&str]) -> String {
    let out = std::process::Command::new(&topo.bins.agent)
        .args(["--instance", &topo.prefix])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mesh-agent {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pod's side: a hand-built A query, the answer's source address as
/// `recvfrom()` reports it, the peer as `getpeername()` does (connected
/// socket), and the address answered.
const QUERY: &str = r#"
import struct
mode, host, port, name = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
qid = 0x4d51
labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
def SocketAddr(a):
    return ("[%s]:%d" if ":" in a[0] else "%s:%d") % (a[0], a[1])
peer = None
if mode == "connected":
    s.connect((host, port))
    peer = SocketAddr(s.getpeername())
    s.send(q)
else:
    s.sendto(q, (host, port))
try:
    data, frm = s.recvfrom(512)
except socket.timeout:
    out(ok=False, error="no answer within 3 s")
    sys.exit(0)
ancount = struct.unpack(">H", data[6:8])[0]
out(ok=True, id=struct.unpack(">H", data[0:2])[0] == qid, source=SocketAddr(frm), peer=peer,
    answer=socket.inet_ntoa(data[-4:]) if ancount else None)
"#;

/// A UDP DNS responder answering every A query with `answer` (other types:
/// no data), recording who asked. Stops on drop.
struct Responder {
    seen: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn bind(netns: &Path, addr: SocketAddr, answer: Ipv4Addr) -> Self {
        let socket = mesh_e2e::netns::bind_udp_in(netns, addr)
            .unwrap_or_else(|e| panic!("binding {addr} in {}: {e}", netns.display()));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || serve(&socket, answer, &seen2, &stop2));
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Addresses of the clients that asked so far.
    fn seen(&self) -> Vec<SocketAddr> {
        self.seen.lock().unwrap().clone()
    }

    fn seen_ips(&self) -> Vec<String> {
        self.seen().iter().map(|a| a.ip().to_string()).collect()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(socket: &UdpSocket, answer: Ipv4Addr, seen: &Mutex<Vec<SocketAddr>>, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        seen.lock().unwrap().push(from);
        if let Some(reply) = dns_answer(&buf[..n], answer) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

/// The answer to a one-question query: the question echoed, and for an A
/// question (type 1) one record with `addr`; `None` for a malformed query.
fn dns_answer(query: &[u8], addr: Ipv4Addr) -> Option<Vec<u8>> {
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..end + 4)?;
    let is_a = question[question.len() - 4..question.len() - 2] == [0, 1];
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[0..2]); // id
    out.extend_from_slice(&[0x81, 0x80]); // answer, recursion desired and available
    out.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if is_a {
        // Name: pointer to the question's; type A, class IN, TTL 60, 4 bytes.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&addr.octets());
    }
    Some(out)
}

#[test]
fn enrolled_pod_dns_reaches_the_agent_and_answers_come_from_the_resolver_asked() {
    let setup = Setup::new();
    let (resolver, proxy) = (setup.resolver(), setup.proxy());
    let asked = setup.resolver_addr().to_string();

    let sendto = setup.query("a", false, "svc.example.test");
    let connected = setup.query("a", true, "svc.example.test");

    for out in [&sendto, &connected] {
        assert_eq!(out["ok"], true, "{out}");
        assert_eq!(out["id"], true, "{out}");
        assert_eq!(
            out["answer"],
            PROXY_ANSWER.to_string(),
            "not the proxy's: {out}"
        );
        assert_eq!(out["source"], asked, "recvfrom saw the agent: {out}");
    }
    assert_eq!(connected["peer"], asked, "getpeername saw the agent");
    let a_ip = setup.topo.pod("a").ip.to_string();
    assert_eq!(proxy.seen_ips(), [a_ip.clone(), a_ip]);
    assert!(
        resolver.seen().is_empty(),
        "resolver reached: {:?}",
        resolver.seen()
    );
    assert_eq!(setup.counter(STAT_DNS_REDIRECTED), 2);
    assert_eq!(setup.counter(STAT_DNS_REPLY_SOURCE_RESTORED), 2);

    // The kernel lists the programs by name, attached at the cgroup root.
    let loaded = bpftool::program_names().unwrap();
    let attached = bpftool::cgroup_programs(setup.topo.cgroup_root()).unwrap();
    for name in DNS_PROGRAMS {
        assert!(loaded.iter().any(|n| n == name), "{name} not loaded");
        assert!(
            attached.iter().any(|p| p.name == name),
            "{name} not attached: {attached:?}"
        );
        assert!(setup.topo.pin_dir().join("progs").join(name).exists());
        assert!(setup.topo.pin_dir().join("links").join(name).exists());
    }
    assert!(setup.map("dns_orig_server").exists());
}

#[test]
fn ipv6_sockets_dns_reaches_the_agent_over_ipv6_and_ipv4_mapped() {
    let setup = Setup::new();
    let (resolver, proxy) = (setup.resolver(), setup.proxy());
    let (resolver6, proxy6) = (setup.resolver6(), setup.proxy6());
    let asked6 = setup.topo.pod("dns").addr6(53);
    let mapped: SocketAddr = format!("[::ffff:{}]:53", setup.resolver_addr().ip())
        .parse()
        .unwrap();

    let sendto = setup.query_to("a", false, "svc.example.test", asked6);
    let connected = setup.query_to("a", true, "svc.example.test", asked6);
    let dual_stack = setup.query_to("a", false, "svc.example.test", mapped);

    for (out, asked) in [
        (&sendto, asked6),
        (&connected, asked6),
        (&dual_stack, mapped),
    ] {
        assert_eq!(out["ok"], true, "{out}");
        assert_eq!(
            out["answer"],
            PROXY_ANSWER.to_string(),
            "not the proxy's: {out}"
        );
        assert_eq!(
            out["source"],
            asked.to_string(),
            "recvfrom saw the agent: {out}"
        );
    }
    assert_eq!(
        connected["peer"],
        asked6.to_string(),
        "getpeername saw the agent"
    );
    let a = setup.topo.pod("a");
    let a_ip6 = a.ip6.to_string();
    assert_eq!(proxy6.seen_ips(), [a_ip6.clone(), a_ip6]);
    assert_eq!(
        proxy.seen_ips(),
        [a.ip.to_string()],
        "mapped query not on IPv4"
    );
    assert!(resolver.seen().is_empty() && resolver6.seen().is_empty());
    assert_eq!(setup.counter(STAT_DNS_REDIRECTED), 3);
    assert_eq!(setup.counter(STAT_DNS_REPLY_SOURCE_RESTORED), 3);
}

#[test]
fn non_enrolled_pod_dns_goes_to_its_resolver() {
    let setup = Setup::new();
    let (resolver, proxy) = (setup.resolver(), setup.proxy());

    for connected in [false, true] {
        let out = setup.query("c", connected, "svc.example.test");
        assert_eq!(out["ok"], true, "{out}");
        assert_eq!(out["answer"], RESOLVER_ANSWER.to_string(), "{out}");
        assert_eq!(out["source"], setup.resolver_addr().to_string(), "{out}");
    }
    let c_ip = setup.topo.pod("c").ip.to_string();
    assert_eq!(resolver.seen_ips(), [c_ip.clone(), c_ip]);
    assert!(proxy.seen().is_empty(), "proxy reached: {:?}", proxy.seen());
    assert_eq!(setup.counter(STAT_DNS_REDIRECTED), 0);

    // `mesh-agent uninstall` detaches them with the rest.
    agent_cli(&setup.topo, &["uninstall"]);
    let attached = bpftool::cgroup_programs(setup.topo.cgroup_root()).unwrap();
    assert_eq!(attached, vec![]);
    assert!(!setup.topo.pin_dir().exists());
}

#[test]
fn dns_port_zero_leaves_enrolled_pods_dns_alone() {
    let setup = Setup::new();
    let (resolver, proxy) = (setup.resolver(), setup.proxy());
    // Installed with a control plane: `dns_port` (bytes 28..30 of
    // `CaptureConfig`) is the proxy's. Installed again without one, it is
    // 0: nobody would answer at the proxy port.
    let config = setup.map("capture_config");
    let value = bpftool::map_lookup(&config, &[0; 4]).unwrap();
    assert_eq!(value.len(), 32, "CaptureConfig is 32 bytes");
    assert_eq!(
        value[28..30],
        DNS_PROXY_PORT.to_le_bytes(),
        "installed with the proxy port"
    );
    install_with(&setup.topo, false);
    let value = bpftool::map_lookup(&config, &[0; 4]).unwrap();
    assert_eq!(value[28..30], [0, 0], "installed without a control plane");

    for connected in [false, true] {
        let out = setup.query("a", connected, "svc.example.test");
        assert_eq!(out["answer"], RESOLVER_ANSWER.to_string(), "{out}");
        assert_eq!(out["source"], setup.resolver_addr().to_string(), "{out}");
    }
    assert_eq!(resolver.seen().len(), 2);
    assert!(proxy.seen().is_empty(), "proxy reached: {:?}", proxy.seen());
    assert_eq!(setup.counter(STAT_DNS_REDIRECTED), 0);
}

/// `/etc/netns/<netns>/resolv.conf`, which `ip netns exec` shows the pod
/// as `/etc/resolv.conf`; removed on drop.
struct NetnsResolvConf(PathBuf);

impl NetnsResolvConf {
    fn write(netns: &str, nameserver: std::net::IpAddr) -> Self {
        let dir = PathBuf::from("/etc/netns").join(netns);
        std::fs::create_dir_all(&dir).unwrap();
        let guard = Self(dir);
        let text = format!("nameserver {nameserver}\noptions timeout:2 attempts:1\n");
        std::fs::write(guard.0.join("resolv.conf"), text).unwrap();
        guard
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn glibc_resolver_in_an_enrolled_pod_accepts_the_proxy_answer() {
    let setup = Setup::new();
    let (resolver, proxy) = (setup.resolver(), setup.proxy());
    let pod = setup.topo.pod("a");
    let _conf = NetnsResolvConf::write(&pod.netns.name, setup.resolver_addr().ip());

    // Join the pod's cgroup first: `ip netns exec` hides /sys/fs/cgroup.
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "echo $$ > \"$0/cgroup.procs\" && exec ip netns exec \"$1\" getent hosts \"$2\"",
        ])
        .arg(&pod.cgroup.path)
        .args([pod.netns.name.as_str(), "reviews.example.test"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "getent failed ({}): {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Vec<&str> = stdout.split_whitespace().take(2).collect();
    assert_eq!(
        first,
        [PROXY_ANSWER.to_string().as_str(), "reviews.example.test"]
    );
    assert!(!proxy.seen().is_empty());
    assert!(
        resolver.seen().is_empty(),
        "resolver reached: {:?}",
        resolver.seen()
    );
    assert!(setup.counter(STAT_DNS_REPLY_SOURCE_RESTORED) >= 1);
}

#[test]
fn install_over_pins_of_an_older_layout_replaces_the_map_and_its_users() {
    let setup = Setup::new();
    let first: Vec<Value> = setup.installed.as_array().unwrap().clone();
    assert_eq!(first.len(), 10, "{first:?}");
    // An older agent's counters: fewer entries. Its pin replaces ours, as
    // if that agent had pinned it; the attached programs keep the map they
    // were loaded with.
    let stats = setup.map("capture_stats");
    std::fs::remove_file(&stats).unwrap();
    let path = stats.display().to_string();
    mesh_e2e::cmd::run(
        "bpftool",
        &[
            "map",
            "create",
            &path,
            "type",
            "percpu_array",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "10",
            "name",
            "capture_stats",
        ],
    )
    .unwrap();

    let again = install(&setup.topo);
    // The counters the pinned map shows move again (a program left
    // attached with the old map would count where no one looks).
    let (_resolver, _proxy) = (setup.resolver(), setup.proxy());
    let out = setup.query("a", false, "svc.example.test");
    assert_eq!(out["answer"], PROXY_ANSWER.to_string(), "{out}");
    assert_eq!(setup.counter(STAT_DNS_REDIRECTED), 1, "{again}");

    let action = |name: &str| {
        again
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["action"]
            .clone()
    };
    // Same code, but they counted into a map no longer pinned: replaced.
    for name in [
        "mesh_connect4",
        "mesh_connect6",
        "mesh_sockops",
        "mesh_inbound",
        "mesh_dns_send4",
        "mesh_dns_recv4",
        "mesh_dns_send6",
        "mesh_dns_recv6",
    ] {
        assert_eq!(action(name), "replaced", "{name}: {again}");
    }
    // They use no counter: their maps are still the pinned ones.
    for name in ["mesh_dns_peer4", "mesh_dns_peer6"] {
        assert_eq!(action(name), "reused", "{name}: {again}");
    }
    let attached = bpftool::cgroup_programs(setup.topo.cgroup_root()).unwrap();
    assert_eq!(attached.len(), 10, "attached twice: {attached:?}");
}
