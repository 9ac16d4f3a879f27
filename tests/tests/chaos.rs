//! Faults under load: a node agent killed with SIGKILL, the control plane
//! gone for longer than a certificate's half-life, and configuration churn
//! while connections are opened. Two nodes, real eBPF capture, real HBONE;
//! the load is `podctl` in pod `a` talking to an echo server in pod `b`.
//! Needs root.
use std::time::{Duration, Instant};

use mesh_e2e::{bins::Binaries, cluster::Cluster};
use mesh_testkit::{eventually, try_eventually};
use nix::sys::signal::Signal;
use serde_json::Value;

/// How long a restarted agent or waypoint may take to serve again.
const WAIT: Duration = Duration::from_secs(15);

const ECHO: u16 = 9080;

fn cluster(tag: &str) -> Cluster {
    mesh_e2e::require_root();
    Cluster::new(
        tag,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["b"])],
    )
    .unwrap()
}

fn start(c: &mut Cluster, control: &[&str], agent: &[&str]) {
    c.start_control(control).unwrap();
    c.start_agent("node1", agent).unwrap();
    c.start_agent("node2", agent).unwrap();
    c.serve("b", ECHO, None).unwrap();
    c.wait_ready("node1", 2, &["a"]).unwrap();
    c.wait_ready("node2", 2, &["b"]).unwrap();
}

fn dst(c: &Cluster) -> String {
    c.pod("b").addr(ECHO).to_string()
}

/// `count` new connections with one round trip each; every one must work
/// (`podctl conn-rr` stops at the first failure).
fn conn_rr(c: &Cluster, count: u32) -> Result<u64, String> {
    let count_arg = count.to_string();
    let out = c
        .client("a", &["conn-rr", "--to", &dst(c), "--count", &count_arg])
        .map_err(|e| format!("{e:#}"))?;
    let done = out["count"].as_u64().unwrap_or(0);
    if done == u64::from(count) {
        Ok(done)
    } else {
        Err(format!("{done} of {count} round trips: {out}"))
    }
}

fn probe(c: &Cluster) -> Value {
    c.client("a", &["probe", "--to", &dst(c), "--timeout-ms", "3000"])
        .unwrap()
}

/// Entries of one of node1's pinned capture maps.
fn map_entries(c: &Cluster, map: &str) -> usize {
    let path = format!("/sys/fs/bpf/{}/maps/{map}", c.instance("node1"));
    let out = mesh_e2e::cmd::run("bpftool", &["-j", "map", "dump", "pinned", &path]).unwrap();
    let dump: Value = serde_json::from_str(&out).unwrap();
    dump.as_array().map_or(0, Vec::len)
}

fn signal(pid: u32, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

/// Takes the agent of `node`, already sent SIGKILL, off the cluster.
fn reap_agent(c: &mut Cluster, node: &str) {
    let mut agent = c.agents.remove(node).expect("agent running");
    assert!(
        agent.wait_exit(Duration::from_secs(5)).is_some(),
        "agent survived SIGKILL"
    );
}

#[test]
fn a_killed_agent_refuses_enrolled_connects_and_serves_again_after_restart() {
    let mut c = cluster("chk");
    start(&mut c, &[], &[]);
    conn_rr(&c, 50).unwrap();

    // Killed while a transfer is running.
    let during = std::thread::scope(|s| {
        let transfer = s.spawn(|| {
            c.client(
                "a",
                &[
                    "echo",
                    "--to",
                    &dst(&c),
                    "--bytes",
                    "1048576",
                    "--chunk-delay-ms",
                    "100",
                ],
            )
        });
        // Kill the agent once the transfer is under way.
        eventually(
            "the transfer open at node1's agent",
            Duration::from_secs(10),
            || {
                let conns = c.agent("node1").connections().unwrap();
                if conns["active"].as_array().is_some_and(|a| !a.is_empty()) {
                    Ok(())
                } else {
                    Err(conns)
                }
            },
        );
        // A connection the agent never accepts: established into the
        // stopped agent's backlog (its original destination recorded),
        // then reset when the agent dies.
        signal(c.agent("node1").pid(), Signal::SIGSTOP);
        let unaccepted = s.spawn(|| probe(&c));
        eventually(
            "the unaccepted connection's orig_dst_tuple entry",
            Duration::from_secs(5),
            || match map_entries(&c, "orig_dst_tuple") {
                0 => Err("no entry"),
                _ => Ok(()),
            },
        );
        signal(c.agent("node1").pid(), Signal::SIGKILL);
        let p = unaccepted.join().unwrap();
        assert_eq!(p["ok"], false, "served by a dead agent? {p}");
        transfer.join().unwrap()
    });
    // The transfer through the dead agent ends (error or short), never hangs.
    if let Ok(out) = &during {
        assert_ne!(
            out["received"], 1_048_576u64,
            "transfer survived a dead proxy?"
        );
    }
    reap_agent(&mut c, "node1");

    // Enrolled pod, agent dead: refused at once, not a hang and not a
    // plaintext connection around the mesh.
    for _ in 0..3 {
        let p = probe(&c);
        assert_eq!(p["ok"], false, "connect bypassed the dead agent: {p}");
        assert_eq!(p["stage"], "connect", "{p}");
        assert_eq!(p["error_kind"], "ConnectionRefused", "{p}");
    }

    // Restart: the pins (programs, enrolment) are reused.
    c.start_agent("node1", &[]).unwrap();
    let restarted = Instant::now();
    let first_ok = try_eventually("a connection served after the restart", WAIT, || {
        let p = probe(&c);
        if p["ok"] == true {
            Ok(restarted.elapsed())
        } else {
            Err(p)
        }
    });
    let first_ok = first_ok.unwrap_or_else(|e| panic!("{e}\n{}", c.agent("node1").log_tail()));
    eprintln!("first connection served {first_ok:?} after the restarted agent was ready");
    c.wait_ready("node1", 2, &["a"]).unwrap();
    conn_rr(&c, 200).unwrap();

    // Every finished connection's original-destination entry is gone,
    // the one the killed agent never accepted too.
    eventually(
        "no orig_dst_tuple entry left",
        Duration::from_secs(5),
        || {
            let left = map_entries(&c, "orig_dst_tuple");
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} entries left after all connections closed"))
            }
        },
    );
}

/// Certificates the agent of `node` has obtained from the CA since start.
fn issued(c: &Cluster, node: &str) -> u64 {
    c.agent(node).mesh().unwrap()["certificates_issued"]
        .as_u64()
        .unwrap()
}

#[test]
fn control_plane_down_past_the_certificate_half_life_fails_no_connection() {
    let mut c = cluster("chc");
    start(&mut c, &[], &["--cert-ttl", "10s"]);
    let issued_before = [issued(&c, "node1"), issued(&c, "node2")];
    c.stop_control();

    // 7 s without a control plane: renewal at half-life (5 s) fails, the
    // certificates in hand stay valid and keep serving.
    let down = Instant::now();
    let mut rounds = 0;
    while down.elapsed() < Duration::from_secs(7) {
        conn_rr(&c, 20).unwrap_or_else(|e| {
            panic!(
                "connection failed {:?} into the outage: {e}\n{}",
                down.elapsed(),
                c.agent("node1").log_tail()
            )
        });
        rounds += 1;
    }
    assert!(
        rounds > 3,
        "too little load during the outage: {rounds} rounds"
    );

    c.start_control(&[]).unwrap();
    // Both ends renew (each agent retries on its own backoff; a
    // certificate may have expired meanwhile), then connections work again.
    eventually(
        "a renewal on both nodes after the control plane came back",
        Duration::from_secs(30),
        || {
            let now = [issued(&c, "node1"), issued(&c, "node2")];
            if now[0] > issued_before[0] && now[1] > issued_before[1] {
                Ok(())
            } else {
                Err(format!("issued before {issued_before:?}, now {now:?}"))
            }
        },
    );
    conn_rr(&c, 50).unwrap();
}

/// One Service, or two: every write changes what the agents are told.
fn churn_yaml(write: u32) -> String {
    let service = |name: &str, ip: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  clusterIP: {ip}\n  selector:\n    app: {name}\n  ports:\n  - name: tcp\n    port: {}\n",
            1000 + write % 5000
        )
    };
    let mut yaml = service("churn-a", "10.96.200.1");
    if write % 2 == 1 {
        yaml += &service("churn-b", "10.96.200.2");
    }
    yaml
}

#[test]
fn configuration_churn_during_load_fails_no_connection() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut c = cluster("chu");
    // Re-read the directory every 10 ms, so each write below is an update.
    start(&mut c, &["--reload-interval", "10ms"], &[]);
    let stop = AtomicBool::new(false);
    let writer = |stop: &AtomicBool| {
        let mut writes = 0u32;
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
            c.write_config("40-churn.yaml", &churn_yaml(writes))
                .unwrap();
            writes += 1;
            // Pacing of the load (time itself): one write per 10 ms.
            std::thread::sleep(Duration::from_millis(10));
        }
        writes
    };
    // What node1's agent knows, sampled: the churn must reach it.
    let watcher = |stop: &AtomicBool| {
        let mut changes = 0u32;
        let mut last = None;
        while !stop.load(Ordering::Relaxed) {
            let services = c.agent("node1").mesh().ok().map(|m| m["services"].clone());
            if services.is_some() && last.is_some() && services != last {
                changes += 1;
            }
            last = services.or(last);
            // Sampling period (time itself), not a wait for a state.
            std::thread::sleep(Duration::from_millis(20));
        }
        changes
    };
    let (writes, changes, result) = std::thread::scope(|s| {
        let w = s.spawn(|| writer(&stop));
        let v = s.spawn(|| watcher(&stop));
        let result = (0..10).try_for_each(|_| conn_rr(&c, 100).map(|_| ()));
        stop.store(true, Ordering::Relaxed);
        (w.join().unwrap(), v.join().unwrap(), result)
    });
    result.unwrap_or_else(|e| panic!("a connection failed during churn: {e}"));
    eprintln!("{writes} writes, node1's service count changed {changes} times, 1000 connections");
    assert!(writes > 50, "too little churn: {writes} writes");
    assert!(
        changes >= 10,
        "the churn did not reach the agent: {changes} changes seen"
    );
}

/// `podctl http` from `client` to `web`'s VIP: (200s, everything else).
fn web_requests(c: &Cluster, count: usize) -> (u64, u64) {
    let count_arg = count.to_string();
    let url = format!("http://{WEB_VIP}:{ECHO}/");
    let out = c
        .client(
            "client",
            &[
                "http",
                "--url",
                &url,
                "--count",
                &count_arg,
                "--timeout-ms",
                "2000",
            ],
        )
        .unwrap();
    let ok = out["statuses"]["200"].as_u64().unwrap_or(0);
    (ok, count as u64 - ok)
}

const WEB_VIP: &str = "10.96.9.10";

#[test]
fn a_killed_waypoint_serves_again_after_restart() {
    mesh_e2e::require_root();
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let mut c = Cluster::new(
        "chw",
        bins,
        &[("node1", &["client", "web"]), ("node2", &["waypoint"])],
    )
    .unwrap();
    c.label_pod("web", &[("app", "web"), ("version", "v1")])
        .unwrap();
    c.label_namespace("istio.io/use-waypoint", "waypoint")
        .unwrap();
    c.declare_waypoint("waypoint", "waypoint").unwrap();
    c.write_config(
        "10-web.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: {WEB_VIP}\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: {ECHO}\n    targetPort: {ECHO}\n"
        ),
    )
    .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.serve_http("web", "v1", ECHO, &[]).unwrap();
    c.start_waypoint("waypoint", "waypoint").unwrap();
    assert_eq!(web_requests(&c, 20), (20, 0), "before the kill");

    let dead = c.waypoints.pop().unwrap();
    signal(dead.pid(), Signal::SIGKILL);
    drop(dead); // reaps the killed process
                // Down: requests fail (the waypoint is the only way to web), and they
                // fail rather than hang (bounded by the 2 s client timeout).
    let (ok, failed) = web_requests(&c, 3);
    assert_eq!((ok, failed), (0, 3), "served without the waypoint?");

    c.start_waypoint("waypoint", "waypoint").unwrap();
    let restarted = Instant::now();
    let served = try_eventually(
        "a request served after the waypoint's restart",
        WAIT,
        || web_requests(&c, 1).0 > 0,
    );
    served.unwrap_or_else(|e| panic!("{e}\n{}", c.waypoints[0].log_tail()));
    eprintln!(
        "first request served {:?} after the restarted waypoint was ready",
        restarted.elapsed()
    );
    assert_eq!(web_requests(&c, 100), (100, 0), "after the restart");
}
