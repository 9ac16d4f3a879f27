//! The agent's `SO_MARK` (1337) on a pod's socket buys nothing: a process
//! with `NET_ADMIN` in an enrolled pod can set it, so the connect hooks
//! apply the kernel DENY before looking at it and honour it only for
//! sockets of the agent's own network namespace and cgroup.
use mesh_e2e::{bins::Binaries, bpftool, pysock, topology::NODE_IP, Topology};

const DENIED: u16 = 9080;
const OPEN: u16 = 9090;
const TAG: &str = "mcm";
/// `mesh_common::AGENT_SOCKET_MARK`, the agent's default `--socket-mark`.
const AGENT_MARK: u32 = 0x539;

fn topology(pods: &[&str]) -> Topology {
    mesh_e2e::require_root();
    Topology::new(TAG, Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")), pods).unwrap()
}

/// Puts (netns `cookie`, `to`) in `deny_connect` (DenyKey: cookie, address
/// IPv4 mapped, port in host order, 6 bytes of padding).
fn deny(topo: &Topology, cookie: u64, to: std::net::SocketAddrV4) {
    let mut key = cookie.to_ne_bytes().to_vec();
    key.extend(to.ip().to_ipv6_mapped().octets());
    key.extend(to.port().to_ne_bytes());
    key.extend([0u8; 6]);
    let pin = topo.pin_dir().join("maps/deny_connect");
    bpftool::map_update(&pin, &key, &[1]).unwrap();
}

#[test]
fn agent_mark_on_a_pod_socket_skips_neither_the_kernel_deny_nor_capture() {
    let mut topo = topology(&["a", "b"]);
    topo.start_agent().unwrap();
    topo.serve("b", DENIED, None).unwrap();
    topo.serve("b", OPEN, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let enrolled = topo.agent().capture().unwrap()["enrolled"].clone();
    let cookie = enrolled[0]["netns_cookie"].as_u64().unwrap();
    let b = topo.pod("b").ip;
    deny(&topo, cookie, std::net::SocketAddrV4::new(b, DENIED));
    let mark = AGENT_MARK;

    let denied = pysock::connect_marked(topo.pod("a"), (b, DENIED).into(), mark).unwrap();
    assert_eq!(
        denied["ok"], false,
        "marked socket skipped the DENY: {denied}"
    );
    assert_eq!(denied["errno"], libc::EPERM, "{denied}");

    // Not denied: still captured (the agent is the peer), not sent direct.
    let open = pysock::connect_marked(topo.pod("a"), (b, OPEN).into(), mark).unwrap();
    assert_eq!(open["ok"], true, "{open}");
    let peers = topo.servers[1].accepted_peers(OPEN, 1);
    assert!(
        peers[0].starts_with(&format!("{NODE_IP}:")),
        "a marked pod socket bypassed capture: {peers:?}"
    );
    assert_eq!(
        topo.agent().kernel_counter("bypass_agent_socket").unwrap(),
        0
    );
}
