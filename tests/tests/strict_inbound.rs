//! Kernel STRICT (`mesh_inbound`, cgroup_skb ingress) fails closed: a pod
//! in `strict_pods` takes new plaintext connections only from the agent's
//! own sockets, from itself, and — from the node address — on the ports
//! declared in `probe_ports` (the kubelet's probes). IPv6 SYNs are judged
//! whatever extension headers they carry. Kernel state is written with
//! bpftool, so no control plane is needed — except where the probe ports
//! come from the Pod's YAML (control plane → Workload resource → agent).
use std::{net::SocketAddr, time::Duration};

use mesh_e2e::{
    bins::Binaries,
    bpftool,
    cluster::Cluster,
    netns, pysock,
    topology::{NODE_IP, NODE_IP6},
    Topology,
};
use mesh_testkit::eventually;

const ECHO: u16 = 9080;
const PROBE: u16 = 8081;
const TAG: &str = "msi";

fn topology(pods: &[&str]) -> Topology {
    mesh_e2e::require_root();
    Topology::new(TAG, Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")), pods).unwrap()
}

fn mapped(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// Puts `ip` in `strict_pods`.
fn make_strict(topo: &Topology, ip: std::net::IpAddr) {
    let pin = topo.pin_dir().join("maps/strict_pods");
    bpftool::map_update(&pin, &mapped(ip), &[1]).unwrap();
}

/// Declares `port` of `ip` a probe port (`probe_ports`: address, port in
/// host order, 6 bytes of padding).
fn declare_probe_port(topo: &Topology, ip: std::net::IpAddr, port: u16) {
    let mut key = mapped(ip).to_vec();
    key.extend(port.to_ne_bytes());
    key.extend([0u8; 6]);
    let pin = topo.pin_dir().join("maps/probe_ports");
    bpftool::map_update(&pin, &key, &[1]).unwrap();
}

/// A connection from the node's namespace (a hostNetwork process, the
/// kubelet, SNATed NodePort traffic: all have the node address).
fn from_node(topo: &Topology, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    netns::connect_in(&topo.node.netns.path(), to, Duration::from_secs(2))
}

fn echo_via_agent(topo: &Topology, from: &str, to: SocketAddr) {
    let out = topo
        .client(from, &["echo", "--to", &to.to_string(), "--bytes", "4096"])
        .unwrap();
    assert_eq!(out["received"], 4096, "{out}");
}

#[test]
fn strict_pod_refuses_plaintext_from_the_node_address_but_not_the_agent() {
    let mut topo = topology(&["a", "b"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let b = topo.pod("b").addr(ECHO);
    make_strict(&topo, b.ip());

    // The agent delivers from the node address: its own connection passes.
    echo_via_agent(&topo, "a", b);
    let peers = topo.servers[0].accepted_peers(ECHO, 1);
    assert!(peers[0].starts_with(&format!("{NODE_IP}:")), "{peers:?}");
    // Any other socket with the node address does not.
    let direct = from_node(&topo, b);
    assert!(
        direct.is_err(),
        "a plaintext connection from the node address reached a STRICT pod"
    );
    assert!(
        topo.agent()
            .kernel_counter("denied_plaintext_strict")
            .unwrap()
            >= 1
    );
}

#[test]
fn strict_pod_takes_the_node_address_on_declared_probe_ports_only() {
    let mut topo = topology(&["b"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, Some(PROBE)).unwrap();
    let b = topo.pod("b").ip;
    make_strict(&topo, b.into());
    declare_probe_port(&topo, b.into(), PROBE);

    from_node(&topo, SocketAddr::from((b, PROBE))).expect("the probe port is refused");
    assert!(
        from_node(&topo, SocketAddr::from((b, ECHO))).is_err(),
        "a port not declared for probes took plaintext from the node address"
    );
}

#[test]
fn strict_pod_refuses_ipv6_syns_with_extension_headers() {
    let mut topo = topology(&["a", "b", "c"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let b = topo.pod("b").addr6(ECHO);
    make_strict(&topo, b.ip());

    // Through the agent (IPv6 agent address) it works.
    echo_via_agent(&topo, "a", b);
    let peers = topo.servers[0].accepted_peers(ECHO, 1);
    assert!(peers[0].contains(&NODE_IP6.to_string()), "{peers:?}");
    // Plain, from a pod outside the mesh: refused (the base case).
    let plain = topo.client(
        "c",
        &["connect", "--to", &b.to_string(), "--timeout-ms", "2000"],
    );
    assert_eq!(
        plain.unwrap()["ok"],
        false,
        "plaintext reached a STRICT pod"
    );
    // The same with a hop-by-hop or a destination-options header.
    for option in ["IPV6_HOPOPTS", "IPV6_DSTOPTS"] {
        let out = pysock::connect_with_ipv6_ext_header(topo.pod("c"), b, option).unwrap();
        assert_eq!(
            out["ok"], false,
            "a SYN with {option} reached a STRICT pod: {out}"
        );
    }
}

const STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n";

/// Waits (at most 20 s) until the agent of `node` has put a pod in
/// `strict_pods`; returns its `/stats/capture`. The agent writes
/// `probe_ports` before `strict_pods`.
fn wait_strict(c: &Cluster, node: &str) -> serde_json::Value {
    eventually(
        &format!("a STRICT pod on {node}"),
        Duration::from_secs(20),
        || {
            let capture = c.agent(node).capture().unwrap();
            if capture["strict_pods"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                Ok(capture)
            } else {
                Err(capture)
            }
        },
    )
}

#[test]
fn kubelet_probes_declared_in_the_pod_spec_reach_a_strict_pod() {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["b"])],
    )
    .unwrap();
    // The readiness probe names its port; the echo port is not probed.
    c.set_pod_spec_extra(
        "b",
        &format!(
            "containers:\n- name: app\n  ports:\n  - name: health\n    containerPort: {PROBE}\n  - containerPort: {ECHO}\n  readinessProbe:\n    tcpSocket:\n      port: health\n  livenessProbe:\n    exec:\n      command: [\"true\"]\n"
        ),
    )
    .unwrap();
    c.write_config("20-peerauth.yaml", STRICT).unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.serve("b", ECHO, Some(PROBE)).unwrap();
    let b = c.pod("b").ip;
    let capture = wait_strict(&c, "node1");

    // The kubelet's position: a plain socket in the node's namespace.
    let node = c.node("node1").netns.path();
    netns::connect_in(&node, SocketAddr::from((b, PROBE)), Duration::from_secs(2))
        .expect("the kubelet's probe to a STRICT pod was dropped");
    assert!(
        netns::connect_in(&node, SocketAddr::from((b, ECHO)), Duration::from_secs(2)).is_err(),
        "a port no probe declares took plaintext from the node address"
    );
    assert_eq!(
        capture["probe_ports"],
        serde_json::json!([SocketAddr::from((b, PROBE)).to_string()]),
        "{capture}"
    );
}
