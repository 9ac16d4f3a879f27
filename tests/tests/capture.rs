//! Capture end to end: real eBPF attached at a per-test cgroup root, pods as
//! network namespaces, the real agent in the node namespace, real TCP.
//! Needs root. Each test builds its own topology, so they run in parallel.
use std::path::Path;

use mesh_e2e::{
    bins::Binaries,
    bpftool,
    topology::{NODE_IP, NODE_IP6},
    Topology,
};
use serde_json::Value;

const ECHO: u16 = 9080;
const TAG: &str = "mte";

fn topology(pods: &[&str]) -> Topology {
    mesh_e2e::require_root();
    Topology::new(TAG, Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")), pods).unwrap()
}

fn ip_of(peer: &str) -> String {
    let addr: std::net::SocketAddr = peer.parse().unwrap_or_else(|e| panic!("{peer}: {e}"));
    addr.ip().to_string()
}

/// One echo exchange of `bytes` from `pod` to `to`; asserts it came back intact.
fn echo_intact(topo: &Topology, pod: &str, to: std::net::SocketAddr, bytes: u64) -> Value {
    let out = topo.client(
        pod,
        &[
            "echo",
            "--to",
            &to.to_string(),
            "--bytes",
            &bytes.to_string(),
        ],
    );
    let out = out.unwrap();
    assert_eq!(out["sent"], bytes, "{out}");
    assert_eq!(out["received"], bytes, "{out}");
    assert_eq!(
        out["sent_sha256"], out["received_sha256"],
        "echo came back altered: {out}"
    );
    out
}

fn assert_gone(prefix: &str, cgroup_root: &Path) {
    let netns = mesh_e2e::cmd::ip(&["netns", "list"]).unwrap();
    assert!(
        !netns.contains(prefix),
        "network namespaces left behind:\n{netns}"
    );
    assert!(
        !cgroup_root.exists(),
        "cgroup left behind: {}",
        cgroup_root.display()
    );
    let pins = Path::new("/sys/fs/bpf").join(prefix);
    assert!(!pins.exists(), "pins left behind: {}", pins.display());
}

#[test]
fn enrolled_pod_traffic_passes_through_the_agent_intact() {
    let mut topo = topology(&["a", "b"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let dst = topo.pod("b").addr(ECHO);

    let out = echo_intact(&topo, "a", dst, 10 << 20);

    // The server saw the agent's address, not pod a's: the connection was proxied.
    let peers = topo.servers[0].accepted_peers(ECHO, 1);
    assert_eq!(
        peers.iter().map(|p| ip_of(p)).collect::<Vec<_>>(),
        vec![NODE_IP.to_string()]
    );
    // The agent's own record: this source, this original destination, every byte.
    let record = topo
        .agent()
        .finished_connection(out["local"].as_str().unwrap())
        .unwrap();
    assert_eq!(record["original_destination"], dst.to_string());
    assert_eq!(record["bytes_sent"], 10u64 << 20);
    assert_eq!(record["bytes_received"], 10u64 << 20);
    assert_eq!(topo.agent().kernel_counter("redirected").unwrap(), 1);
    assert_eq!(topo.agent().kernel_counter("orig_dst_recorded").unwrap(), 1);
}

#[test]
fn ipv6_connections_are_captured_through_connect6() {
    let mut topo = topology(&["a", "b"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let dst = topo.pod("b").addr6(ECHO);

    let out = echo_intact(&topo, "a", dst, 1 << 20);

    let peers = topo.servers[0].accepted_peers(ECHO, 1);
    assert_eq!(
        ip_of(&peers[0]),
        NODE_IP6.to_string(),
        "not proxied: {peers:?}"
    );
    let record = topo
        .agent()
        .finished_connection(out["local"].as_str().unwrap())
        .unwrap();
    assert_eq!(record["original_destination"], dst.to_string(), "{record}");
    assert_eq!(record["bytes_received"], 1u64 << 20);
}

#[test]
fn non_enrolled_pod_goes_direct() {
    let mut topo = topology(&["a", "b", "c"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();

    echo_intact(&topo, "c", topo.pod("b").addr(ECHO), 64 << 10);

    let peers = topo.servers[0].accepted_peers(ECHO, 1);
    assert_eq!(
        ip_of(&peers[0]),
        topo.pod("c").ip.to_string(),
        "c must reach b directly"
    );
    assert_eq!(topo.agent().connections().unwrap()["totals"]["accepted"], 0);
    assert_eq!(topo.agent().kernel_counter("redirected").unwrap(), 0);
}

#[test]
fn unenrolling_restores_the_direct_path() {
    let mut topo = topology(&["a", "b"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    let dst = topo.pod("b").addr(ECHO);
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    echo_intact(&topo, "a", dst, 4096);
    topo.agent().unenroll(topo.pod("a")).unwrap();
    echo_intact(&topo, "a", dst, 4096);

    let peers: Vec<String> = topo.servers[0]
        .accepted_peers(ECHO, 2)
        .iter()
        .map(|p| ip_of(p).to_string())
        .collect();
    assert_eq!(
        peers,
        vec![NODE_IP.to_string(), topo.pod("a").ip.to_string()]
    );
    assert_eq!(topo.agent().connections().unwrap()["totals"]["accepted"], 1);
    assert!(topo.agent().capture().unwrap()["enrolled"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn bypass_rules_keep_loopback_hbone_and_excluded_ports_off_the_agent() {
    let mut topo = topology(&["a", "b"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, Some(15008)).unwrap(); // 15008: HBONE, never captured
    topo.serve("b", 9090, None).unwrap();
    topo.serve("a", 7070, None).unwrap(); // a talks to itself over loopback
    topo.agent().enroll(topo.pod("a"), &[9090]).unwrap();

    let a_ip = topo.pod("a").ip.to_string();
    echo_intact(&topo, "a", topo.pod("b").addr(9090), 1024);
    echo_intact(&topo, "a", "127.0.0.1:7070".parse().unwrap(), 1024);
    let hbone = topo.client(
        "a",
        &["connect", "--to", &topo.pod("b").addr(15008).to_string()],
    );
    assert_eq!(hbone.unwrap()["ok"], true);
    echo_intact(&topo, "a", topo.pod("b").addr(ECHO), 1024); // still captured

    assert_eq!(
        ip_of(&topo.servers[1].accepted_peers(9090, 1)[0]),
        a_ip,
        "excluded port went via agent"
    );
    assert_eq!(
        ip_of(&topo.servers[0].accepted_peers(15008, 1)[0]),
        a_ip,
        "HBONE port went via agent"
    );
    assert_eq!(
        ip_of(&topo.servers[2].accepted_peers(7070, 1)[0]),
        "127.0.0.1"
    );
    assert_eq!(
        ip_of(&topo.servers[0].accepted_peers(ECHO, 1)[0]),
        NODE_IP.to_string()
    );
    let agent = topo.agent();
    assert_eq!(agent.kernel_counter("bypass_excluded_port").unwrap(), 1);
    assert_eq!(agent.kernel_counter("bypass_mesh_port").unwrap(), 1);
    assert_eq!(agent.kernel_counter("bypass_loopback").unwrap(), 1);
    assert_eq!(agent.kernel_counter("redirected").unwrap(), 1);
    assert_eq!(agent.connections().unwrap()["totals"]["accepted"], 1);
}

#[test]
fn agent_restart_reuses_pins_without_a_second_attachment() {
    let mut topo = topology(&["a", "b"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    let before = bpftool::cgroup_programs(topo.cgroup_root()).unwrap();
    let mut names: Vec<&str> = before.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "mesh_connect4",
            "mesh_connect6",
            "mesh_dns_peer4",
            "mesh_dns_peer6",
            "mesh_dns_recv4",
            "mesh_dns_recv6",
            "mesh_dns_send4",
            "mesh_dns_send6",
            "mesh_inbound",
            "mesh_sockops"
        ],
        "{before:?}"
    );

    topo.stop_agent();
    topo.start_agent().unwrap();

    let after = bpftool::cgroup_programs(topo.cgroup_root()).unwrap();
    assert_eq!(after.len(), 10, "attached twice after restart: {after:?}");
    let mut ids_before: Vec<u32> = before.iter().map(|p| p.id).collect();
    let mut ids_after: Vec<u32> = after.iter().map(|p| p.id).collect();
    ids_before.sort_unstable();
    ids_after.sort_unstable();
    assert_eq!(
        ids_before, ids_after,
        "the pinned programs were not the ones kept"
    );
    let capture = topo.agent().capture().unwrap();
    for program in capture["programs"].as_array().unwrap() {
        assert_eq!(program["action"], "reused", "{program}");
    }
    // Enrolment survived in the pinned map: no re-enrol, still captured.
    echo_intact(&topo, "a", topo.pod("b").addr(ECHO), 1 << 20);
    let peers = topo.servers[0].accepted_peers(ECHO, 1);
    assert_eq!(ip_of(&peers[0]), NODE_IP.to_string());
    assert_eq!(topo.agent().connections().unwrap()["totals"]["accepted"], 1);
}

#[test]
fn agent_down_enrolled_connect_is_refused_and_others_unaffected() {
    let mut topo = topology(&["a", "b", "c"]);
    topo.start_agent().unwrap();
    topo.serve("b", ECHO, None).unwrap();
    topo.agent().enroll(topo.pod("a"), &[]).unwrap();
    topo.stop_agent();
    let dst = topo.pod("b").addr(ECHO).to_string();

    // A hang would surface as TimedOut after the 5 s connect timeout.
    let a = topo
        .client("a", &["connect", "--to", &dst, "--timeout-ms", "5000"])
        .unwrap();
    assert_eq!(a["ok"], false, "{a}");
    assert_eq!(a["error_kind"], "ConnectionRefused", "{a}");
    let c = topo.client("c", &["connect", "--to", &dst]).unwrap();
    assert_eq!(c["ok"], true, "{c}");
    echo_intact(&topo, "c", topo.pod("b").addr(ECHO), 4096);
}

#[test]
fn teardown_leaves_nothing_behind_even_when_a_test_fails() {
    let mut leftovers = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut topo = topology(&["a", "b"]);
        leftovers = Some((topo.prefix.clone(), topo.cgroup_root().to_path_buf()));
        topo.start_agent().unwrap();
        topo.serve("b", ECHO, None).unwrap();
        topo.agent().enroll(topo.pod("a"), &[]).unwrap();
        assert!(topo.pin_dir().join("links/mesh_connect4").exists());
        panic!("deliberate failure mid-test");
    }));
    assert!(result.is_err());
    let (prefix, cgroup_root) = leftovers.unwrap();
    assert_gone(&prefix, &cgroup_root);
    // The agent log is kept on purpose when a test fails; this failure was ours.
    let _ = std::fs::remove_file(mesh_e2e::agent::log_path(&prefix));
}
