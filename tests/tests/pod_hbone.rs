//! HBONE addressed to the pod, as Istio's ztunnel in-pod mode does: each
//! enrolled pod has the agent's HBONE listener on `<pod IP>:15008` inside
//! its own network namespace, and a tunnel leaves from the source pod's
//! namespace, so the destination sees the source pod's address. Two
//! nodes: `a` (mesh) and `legacy` (unenrolled, plaintext) on node1, `b` on
//! node2. A client without SNI reaching a pod's listener is covered by
//! `ztunnel_conformance.rs`. Needs root.
use std::time::Duration;

use mesh_e2e::{
    bins::Binaries,
    cluster::{hbone_listening, node_ip, Cluster},
};
use mesh_testkit::{eventually, try_eventually};
use serde_json::Value;

const ECHO: u16 = 9080;
const TAG: &str = "mph";
const WAIT: Duration = Duration::from_secs(20);

fn cluster() -> Cluster {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        TAG,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a", "legacy"]), ("node2", &["b"])],
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.agent("node1").unenroll(c.pod("legacy")).unwrap();
    c.serve("b", ECHO, None).unwrap();
    c.wait_ready("node1", 3, &["a"]).unwrap();
    c.wait_ready("node2", 3, &["b"]).unwrap();
    c
}

fn probe(c: &Cluster, from: &str, port: u16) -> Value {
    let to = c.pod("b").addr(port).to_string();
    c.client(from, &["probe", "--to", &to, "--timeout-ms", "2000"])
        .unwrap()
}

/// Writes `yaml` and waits until node2's agent holds `name` in its view
/// and its kernel maps.
fn apply(c: &Cluster, file: &str, yaml: &str, name: &str) {
    c.write_config(file, yaml).unwrap();
    eventually(&format!("node2 holding {name}"), WAIT, || {
        let mesh = c.agent("node2").mesh().ok()?;
        let held = mesh["policies"].as_array()?.iter().any(|p| p == name);
        let kernel = mesh["kernel_policy_generation"].as_u64()?;
        (held && kernel == mesh["policy_generation"].as_u64()?).then_some(())
    });
}

fn allow_ip_block(block: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-block\n  \
         namespace: default\nspec:\n  selector:\n    matchLabels:\n      app: b\n  action: ALLOW\n  \
         rules:\n  - from:\n    - source:\n        ipBlocks: [\"{block}\"]\n"
    )
}

#[test]
fn the_destination_sees_the_source_pod_as_the_tunnels_tcp_source() {
    let c = cluster();
    let a_ip = c.pod("a").ip;
    assert!(
        hbone_listening(c.pod("b")).unwrap(),
        "b has its own listener"
    );
    // `legacy` was enrolled when its agent started, then unenrolled: its
    // listener (if the agent got to start one) goes away.
    eventually("no listener in the unenrolled pod", WAIT, || {
        (!hbone_listening(c.pod("legacy")).ok()?).then_some(())
    });

    let r = probe(&c, "a", ECHO);
    assert_eq!(r["ok"], true, "a -> b: {r}");
    // node2's record of the tunnel: its TCP source is a's address, not
    // node1's (the tunnel left from a's namespace for b's own listener).
    let inbound = try_eventually("node2's record of a's tunnel", WAIT, || {
        let conns = c.agent("node2").connections()?;
        conns["recent"]
            .as_array()
            .and_then(|r| {
                r.iter()
                    .rev()
                    .find(|r| r["direction"] == "inbound")
                    .cloned()
            })
            .ok_or_else(|| anyhow::anyhow!("no inbound record: {conns}"))
    })
    .unwrap();
    let source: std::net::SocketAddr = inbound["source"].as_str().unwrap().parse().unwrap();
    assert_eq!(source.ip(), a_ip, "{inbound}");
    assert_eq!(
        inbound["upstream"],
        c.pod("b").addr(ECHO).to_string(),
        "{inbound}"
    );

    // ipBlocks at the destination: a's address matches, node1's does not.
    apply(
        &c,
        "30-authz.yaml",
        &allow_ip_block(&format!("{a_ip}/32")),
        "default/allow-block",
    );
    let r = probe(&c, "a", ECHO);
    assert_eq!(r["ok"], true, "ALLOW ipBlocks a/32: {r}");
    apply(
        &c,
        "30-authz.yaml",
        &allow_ip_block(&format!("{}/32", node_ip(1))).replace("allow-block", "allow-node1"),
        "default/allow-node1",
    );
    let r = probe(&c, "a", ECHO);
    assert_eq!(
        r["ok"], false,
        "ALLOW ipBlocks node1/32 must not match a: {r}"
    );
}

#[test]
fn a_strict_pod_admits_mtls_on_15008_and_drops_plaintext_to_its_app_port() {
    let c = cluster();
    c.write_config(
        "20-peerauth.yaml",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  \
         namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n",
    )
    .unwrap();
    eventually("b STRICT in node2's kernel", WAIT, || {
        let capture = c.agent("node2").capture().ok()?;
        let strict = capture["strict_pods"].as_array()?;
        strict
            .iter()
            .any(|p| p.as_str() == Some(&c.pod("b").ip.to_string()))
            .then_some(())
    });
    let before = c
        .agent("node2")
        .kernel_counter("denied_plaintext_strict")
        .unwrap();

    // mTLS: a's tunnel from a's namespace to b's listener.
    let r = probe(&c, "a", ECHO);
    assert_eq!(r["ok"], true, "a -> b over HBONE under STRICT: {r}");

    // Plaintext to the app port: the SYN is dropped (a timeout).
    let r = probe(&c, "legacy", ECHO);
    assert_eq!(
        r["ok"], false,
        "plaintext to b's app port under STRICT: {r}"
    );
    assert_eq!(r["stage"], "connect", "{r}");
    let after = c
        .agent("node2")
        .kernel_counter("denied_plaintext_strict")
        .unwrap();
    assert!(
        after > before,
        "the dropped SYN is counted ({before} -> {after})"
    );

    // Plaintext to 15008: the kernel lets the SYN in, the listener wants
    // TLS and closes on plaintext, so nothing reaches b.
    let r = probe(&c, "legacy", 15008);
    assert_eq!(r["ok"], false, "plaintext through b's HBONE listener: {r}");
    assert_eq!(
        r["stage"], "exchange",
        "the TCP connect itself succeeds: {r}"
    );
}

/// What `/proc/<pid>` says of a process: open descriptors and RSS (KiB).
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// The cost of per-pod listeners (docs/benchmarks.md): one agent, 50
/// enrolled mesh pods; descriptors and RSS with every pod listening, after
/// unenrolling them all, and the time from re-enrolling them to all 50
/// listening. Prints figures; asserts only that the listeners exist.
/// `cargo test -p mesh-e2e --test pod_hbone -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check"]
fn measure_per_pod_listener_cost() {
    mesh_e2e::require_root();
    const PODS: usize = 50;
    let names: Vec<String> = (0..PODS).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut c = Cluster::new(
        "mpb",
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &refs)],
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.wait_ready("node1", PODS, &refs).unwrap();
    let pid = c.agent("node1").pid();
    let listening = |c: &Cluster| {
        names
            .iter()
            .filter(|n| hbone_listening(c.pod(n)).unwrap_or(false))
            .count()
    };
    assert_eq!(listening(&c), PODS);
    std::thread::sleep(Duration::from_secs(2));
    let (fds_on, rss_on) = fds_and_rss(pid);

    for n in &names {
        c.agent("node1").unenroll(c.pod(n)).unwrap();
    }
    eventually("no pod listening", WAIT, || {
        (listening(&c) == 0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let (fds_off, rss_off) = fds_and_rss(pid);

    let started = std::time::Instant::now();
    for n in &names {
        c.agent("node1").enroll(c.pod(n), &[]).unwrap();
    }
    let enrolled_in = started.elapsed();
    eventually("every pod listening again", WAIT, || {
        (listening(&c) == PODS).then_some(())
    });
    let all_listening_in = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (fds_again, rss_again) = fds_and_rss(pid);
    println!(
        "per-pod listeners, {PODS} pods: fds {fds_on} listening / {fds_off} none / {fds_again} again \
         ({:.2} per pod); RSS KiB {rss_on} / {rss_off} / {rss_again} ({:.1} KiB per pod); \
         {PODS} enrols (CLI) took {enrolled_in:?}, all listening after {all_listening_in:?}",
        (fds_again as f64 - fds_off as f64) / PODS as f64,
        (rss_again as f64 - rss_off as f64) / PODS as f64,
    );
    // The agent's own timing: when each listener of the re-enrol pass
    // was ready (its log's timestamps, seconds of the day).
    let log = std::env::temp_dir().join(format!("{}-agent.log", c.instance("node1")));
    let ready: Vec<f64> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("pod HBONE listener ready"))
        .filter_map(|l| {
            let at = l.find('T')?;
            let hms = l.get(at + 1..at + 16)?;
            let mut parts = hms.split(':');
            let h: f64 = parts.next()?.parse().ok()?;
            let m: f64 = parts.next()?.parse().ok()?;
            let s: f64 = parts.next()?.parse().ok()?;
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .collect();
    for (pass, times) in [
        ("first pass (namespaces unknown)", ready.get(..PODS)),
        ("re-enrol pass", ready.get(PODS..)),
    ] {
        let Some(times) = times else { continue };
        let span_ms = (times.last().unwrap_or(&0.0) - times.first().unwrap_or(&0.0)) * 1000.0;
        let mut gaps: Vec<f64> = times.windows(2).map(|w| (w[1] - w[0]) * 1000.0).collect();
        gaps.sort_by(f64::total_cmp);
        println!(
            "{pass}: {} listeners in {span_ms:.1} ms; gap between listeners median {:.2} ms, max {:.2} ms",
            times.len(),
            gaps.get(gaps.len() / 2).copied().unwrap_or(0.0),
            gaps.last().copied().unwrap_or(0.0),
        );
    }
}
