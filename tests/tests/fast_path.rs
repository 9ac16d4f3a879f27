//! The same-node fast path end to end: pods `a` and `b` on one node, one
//! agent, the control plane. Once the agent has authorized `a` → `b`'s
//! address and port, the next `connect()` of that pair goes to `b` itself
//! (the kernel counts `fast_path`, `b` sees `a`'s own address instead of
//! the node's), and the agent still reports it (`route` = `kernel`, the
//! kernel's byte counts), still closes it when a policy change denies it,
//! and forgets the pair on every change. Needs root.
use std::time::Duration;

use mesh_e2e::{bins::Binaries, cluster::Cluster};
use mesh_testkit::{eventually, try_eventually};
use serde_json::Value;

const ECHO: u16 = 9080;
const TAG: &str = "mfp";
const WAIT: Duration = Duration::from_secs(20);

fn cluster(agent_args: &[&str], config: &[(&str, &str)]) -> Cluster {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a", "b"])],
    )
    .unwrap();
    for (file, yaml) in config {
        c.write_config(file, yaml).unwrap();
    }
    c.start_control(&[]).unwrap();
    c.start_agent("node1", agent_args).unwrap();
    c.serve("b", ECHO, None).unwrap();
    c.wait_ready("node1", 2, &["a", "b"]).unwrap();
    c
}

/// `a` sends `bytes` to `b`'s echo port and gets them back.
fn echo(c: &Cluster, bytes: u64) -> Value {
    let to = c.pod("b").addr(ECHO).to_string();
    let n = bytes.to_string();
    let out = c
        .client("a", &["echo", "--to", &to, "--bytes", &n])
        .unwrap();
    assert_eq!(out["received"], out["sent"], "{out}");
    assert_eq!(out["sent_sha256"], out["received_sha256"], "{out}");
    out
}

/// The agent's finished connections from `a`, oldest first.
fn finished_from_a(c: &Cluster) -> Vec<Value> {
    let a = c.pod("a").ip.to_string();
    let recent = c.agent("node1").connections().unwrap();
    recent["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["source"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("{a}:")))
        })
        .cloned()
        .collect()
}

/// Waits until the agent has finished `n` connections from `a`.
fn wait_finished(c: &Cluster, n: usize) -> Vec<Value> {
    try_eventually(&format!("{n} finished connections from a"), WAIT, || {
        let done = finished_from_a(c);
        if done.len() >= n {
            Ok(done)
        } else {
            Err(format!("{done:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.agent("node1").log_tail()))
}

#[test]
fn an_authorized_pair_connects_pod_to_pod_and_is_still_reported() {
    let c = cluster(&[], &[]);
    let node1 = c.agent("node1");
    assert_eq!(node1.kernel_counter("fast_path").unwrap(), 0);

    echo(&c, 64 << 10);
    let first = wait_finished(&c, 1);
    assert_eq!(first[0]["route"], "local", "first of the pair: {first:?}");

    echo(&c, 100_000);
    let done = wait_finished(&c, 2);
    let second = &done[1];
    assert_eq!(second["route"], "kernel", "{done:?}");
    assert_eq!(node1.kernel_counter("fast_path").unwrap(), 1);
    // The kernel's counts: every byte each way, acknowledged.
    assert_eq!(second["bytes_sent"], 100_000, "{second}");
    assert_eq!(second["bytes_received"], 100_000, "{second}");
    assert_eq!(
        second["source_identity"], "spiffe://cluster.local/ns/default/sa/a",
        "{second}"
    );
    assert_eq!(
        second["destination_identity"], "spiffe://cluster.local/ns/default/sa/b",
        "{second}"
    );
    // `b` saw the agent (node address) first, then `a` itself.
    let peers = c.servers[0].accepted_peers(ECHO, 2);
    let a_ip = c.pod("a").ip.to_string();
    assert!(!peers[0].starts_with(&format!("{a_ip}:")), "{peers:?}");
    assert!(peers[1].starts_with(&format!("{a_ip}:")), "{peers:?}");
    // Istio's TCP metrics count it, from both reporters.
    let metrics = node1.metrics_text().unwrap();
    let opened = metrics
        .lines()
        .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .filter(|l| l.contains("destination_workload=\"b\""))
        .count();
    assert!(opened >= 2, "source and destination reporters:\n{metrics}");
}

#[test]
fn a_policy_change_aborts_a_kernel_carried_connection_and_forgets_the_pair() {
    let mut c = cluster(&[], &[]);
    echo(&c, 1024);
    let to = c.pod("b").addr(ECHO).to_string();
    let held = c
        .background("a", &["hold", "--to", &to, "--max-seconds", "30"], |v| {
            v["connected"] == true
        })
        .unwrap();
    let node1 = c.agent("node1");
    eventually("the held connection on the fast path", WAIT, || {
        let n = node1.kernel_counter("fast_path").unwrap();
        if n == 1 {
            Ok(())
        } else {
            Err(n)
        }
    });
    c.write_config(
        "30-authz.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: deny-a\n  namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: b\n  action: DENY\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/default/sa/a\"]\n    to:\n    - operation:\n        notPorts: [\"1\"]\n",
    )
    .unwrap();
    let closed = c.servers[held]
        .printed_line(WAIT, |v| v["closed"] == true)
        .unwrap_or_else(|e| {
            panic!(
                "the now-denied fast-path connection stayed open: {e}\n{}",
                node1.log_tail()
            )
        });
    assert!(closed["round_trips"].as_u64().unwrap() >= 1, "{closed}");
    let mesh = node1.mesh().unwrap();
    assert!(mesh["closed_by_policy"].as_u64().unwrap() >= 1, "{mesh}");
    // The pair is forgotten: the next connection goes to the agent, which
    // refuses it (the DENY has `notPorts`, so the kernel does not).
    let r = c
        .client("a", &["probe", "--to", &to, "--timeout-ms", "3000"])
        .unwrap();
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(node1.kernel_counter("fast_path").unwrap(), 1);
}

#[test]
fn strict_destinations_admit_the_fast_path_and_it_can_be_switched_off() {
    let strict = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n";
    let c = cluster(&[], &[("20-peerauth.yaml", strict)]);
    eventually("b under STRICT", WAIT, || {
        let capture = c.agent("node1").capture().unwrap();
        if capture["strict_pods"].as_array().map_or(0, Vec::len) > 0 {
            Ok(())
        } else {
            Err(capture)
        }
    });
    for _ in 0..3 {
        echo(&c, 4096);
    }
    let done = wait_finished(&c, 3);
    let routes: Vec<&str> = done.iter().filter_map(|r| r["route"].as_str()).collect();
    assert_eq!(routes, ["local", "kernel", "kernel"]);
    drop(c);

    let mut c = cluster(&[], &[]);
    for _ in 0..2 {
        echo(&c, 4096);
    }
    let fast = c.agent("node1").kernel_counter("fast_path").unwrap();
    assert_eq!(fast, 1, "the second connection took the fast path");
    // Restarted without it: the pair cached before is forgotten too.
    c.stop_agent("node1");
    c.start_agent("node1", &["--fast-path=false"]).unwrap();
    c.wait_ready("node1", 2, &["a", "b"]).unwrap();
    for _ in 0..3 {
        echo(&c, 4096);
    }
    let done = wait_finished(&c, 3);
    let routes: Vec<&str> = done.iter().filter_map(|r| r["route"].as_str()).collect();
    assert_eq!(routes, ["local", "local", "local"]);
    assert_eq!(c.agent("node1").kernel_counter("fast_path").unwrap(), fast);
}
