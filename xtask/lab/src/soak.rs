//! `cargo xtask soak --minutes N`: the demo mesh (two nodes, agents, the
//! waypoint, bookinfo pods) under mixed load for N minutes while its
//! configuration churns and its daemons are restarted, reporting requests,
//! failures, memory and fds as it goes and a verdict at the end
//! ([`crate::soak_report`]).
//!
//! - Load (one thread, batches of 20 requests): L7 through the waypoint
//!   (`productpage` → `reviews`, with and without the `end-user` header) and
//!   L4 through the agents only (`sleep` → the `details-v1` pod address).
//! - Churn: the `reviews` VirtualService's canary weights flip every
//!   second (every version answers, so churn alone must cost no request).
//! - Restarts: every `--restart-every` seconds, node1's agent (SIGTERM,
//!   then a new process on the same pins) or the waypoint, in turn. A
//!   failure during a restart (or just after, [`RESTART_GRACE`]) is
//!   explained; any other is not.
//! - Samples: RSS and open fds of every daemon every 10 s.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use mesh_e2e::{agent::Agent, cluster::Cluster, waypoint::MeshWaypoint};

use crate::{
    demo_bookinfo,
    lab_args::SoakArgs,
    soak_report::{Batch, Restart, Sample, SoakReport, RESTART_GRACE, RSS_GROWTH_LIMIT},
    step,
};

const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// (label, pod, url, extra `podctl http` flags).
type Call = (&'static str, &'static str, String, Vec<&'static str>);

pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    crate::require_root("cargo xtask soak")?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    let mut c = demo_bookinfo::start(crate::binaries()?, None)?;
    let calls: Vec<Call> = vec![
        (
            "l7 reviews",
            "productpage-v1",
            "http://10.96.1.12:9080/reviews/1".into(),
            vec![],
        ),
        (
            "l7 reviews jason",
            "productpage-v1",
            "http://10.96.1.12:9080/reviews/1".into(),
            vec!["--header", "end-user: jason"],
        ),
        (
            "l4 details pod",
            "sleep",
            format!("http://{}/details/1", c.pod("details-v1").addr(9080)),
            vec![],
        ),
    ];
    // The daemons the soak restarts leave the cluster's keeping for the run
    // (the load threads share the cluster read-only) and return at the end.
    let mut agent = c.agents.remove("node1").expect("node1 agent");
    // The waypoint starts first (the ingress gateway after it).
    anyhow::ensure!(!c.waypoints.is_empty(), "the demo started no waypoint");
    let mut waypoint = c.waypoints.remove(0);
    let report = Mutex::new(SoakReport::default());
    let run_for = Duration::from_secs(args.minutes * 60);
    step(format!(
        "soaking for {} min: load, VirtualService churn every 1 s, a restart every {} s, samples every {} s",
        args.minutes,
        args.restart_every,
        SAMPLE_EVERY.as_secs()
    ));
    println!(
        "  {:>6}  {:<14} {:>10} {:>6}   requests  failures",
        "t", "daemon", "rss KiB", "fds"
    );
    let clock = Instant::now();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| -> anyhow::Result<()> {
        s.spawn(|| load(&c, &calls, clock, &done, &report));
        let result = drive(
            &c,
            &mut agent,
            &mut waypoint,
            args,
            clock,
            run_for,
            &stop,
            &report,
        );
        done.store(true, Ordering::SeqCst);
        result
    })?;
    c.agents.insert("node1".into(), agent);
    c.waypoints.insert(0, waypoint);

    let report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    print_verdict(&report);
    step("tearing down (waypoint, agents, control plane, pods, namespaces, cgroups, pins)");
    drop(c);
    anyhow::ensure!(
        report.verdict().passed(),
        "soak failed (see the verdict above)"
    );
    Ok(())
}

/// The load thread: batches until `done`.
fn load(
    c: &Cluster,
    calls: &[Call],
    clock: Instant,
    done: &AtomicBool,
    report: &Mutex<SoakReport>,
) {
    for (label, pod, url, extra) in calls.iter().cycle() {
        if done.load(Ordering::SeqCst) {
            return;
        }
        let start = clock.elapsed();
        let mut args = vec!["http", "--url", url, "--count", "20", "--max-seconds", "10"];
        args.extend(["--timeout-ms", "5000"]);
        args.extend_from_slice(extra);
        let (requests, failures) = match c.client(pod, &args) {
            Ok(r) => {
                let ok = r["statuses"]["200"].as_u64().unwrap_or(0);
                (20, 20 - ok.min(20))
            }
            Err(_) => (20, 20),
        };
        let batch = Batch {
            path: label,
            start,
            end: clock.elapsed(),
            requests,
            failures,
        };
        lock(report).batches.push(batch);
    }
}

fn lock(report: &Mutex<SoakReport>) -> std::sync::MutexGuard<'_, SoakReport> {
    report.lock().unwrap_or_else(|e| e.into_inner())
}

/// The main thread: churn, restarts and samples until the time is up.
#[allow(clippy::too_many_arguments)]
fn drive(
    c: &Cluster,
    agent: &mut Agent,
    waypoint: &mut MeshWaypoint,
    args: &SoakArgs,
    clock: Instant,
    run_for: Duration,
    stop: &AtomicBool,
    report: &Mutex<SoakReport>,
) -> anyhow::Result<()> {
    let restart_every = Duration::from_secs(args.restart_every.max(1));
    let (mut next_restart, mut next_sample) = (restart_every, Duration::ZERO);
    let mut restart_agent = true;
    let mut flip = false;
    while clock.elapsed() < run_for && !stop.load(Ordering::SeqCst) {
        c.write_config("60-soak-churn.yaml", &churn_yaml(flip))?;
        flip = !flip;
        lock(report).config_writes += 1;
        if clock.elapsed() >= next_sample {
            sample(c, agent, waypoint, clock, report);
            next_sample += SAMPLE_EVERY;
        }
        if clock.elapsed() >= next_restart {
            let start = clock.elapsed();
            let daemon = if restart_agent {
                agent.stop();
                *agent = Agent::start(agent.spec.clone())?;
                "agent node1"
            } else {
                let (bin, spec, dir) = (
                    c.bins.waypoint.clone(),
                    waypoint.spec.clone(),
                    waypoint.log.parent().map(std::path::Path::to_path_buf),
                );
                let netns = waypoint.netns.clone();
                waypoint.stop();
                let dir = dir.ok_or_else(|| anyhow::anyhow!("waypoint log has no directory"))?;
                *waypoint = MeshWaypoint::start(&bin, spec, netns.as_deref(), &dir)?;
                waypoint.wait_ready(Duration::from_secs(30))?;
                "waypoint"
            };
            let end = clock.elapsed();
            println!(
                "  {:>5}s  restarted {daemon} in {:.1} s",
                start.as_secs(),
                (end - start).as_secs_f64()
            );
            lock(report).restarts.push(Restart {
                daemon: daemon.into(),
                start,
                end,
            });
            restart_agent = !restart_agent;
            next_restart = end + restart_every;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // Let the last batch finish outside any restart window.
    std::thread::sleep(RESTART_GRACE);
    Ok(())
}

fn churn_yaml(flip: bool) -> String {
    let (v1, v2) = if flip { (50, 50) } else { (80, 20) };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  hosts:\n  - reviews\n  http:\n  - name: jason\n    match:\n    - headers:\n        end-user:\n          exact: jason\n    route:\n    - destination:\n        host: reviews\n        subset: v3\n  - name: canary\n    route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: {v1}\n    - destination:\n        host: reviews\n        subset: v2\n      weight: {v2}\n"
    )
}

fn sample(
    c: &Cluster,
    agent: &Agent,
    waypoint: &MeshWaypoint,
    clock: Instant,
    report: &Mutex<SoakReport>,
) {
    let mut daemons = vec![("agent node1", agent.pid()), ("waypoint", waypoint.pid())];
    if let Some(a) = c.agents.get("node2") {
        daemons.push(("agent node2", a.pid()));
    }
    if let Some(control) = &c.control {
        daemons.push(("control", control.pid()));
    }
    let at = clock.elapsed();
    let mut report = lock(report);
    let (requests, failures) = report
        .batches
        .iter()
        .fold((0, 0), |(r, f), b| (r + b.requests, f + b.failures));
    for (daemon, pid) in daemons {
        let Some((rss_kib, fds)) = proc_usage(pid) else {
            continue;
        };
        println!(
            "  {:>5}s  {daemon:<14} {rss_kib:>10} {fds:>6}   {requests:>8}  {failures:>8}",
            at.as_secs()
        );
        report
            .samples
            .entry(daemon.to_string())
            .or_default()
            .push(Sample { at, rss_kib, fds });
    }
}

/// (VmRSS in KiB, open fds) of a live process.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

fn print_verdict(report: &SoakReport) {
    let v = report.verdict();
    step("soak verdict");
    println!(
        "  requests {}  failures {}  explained by restarts {}  unexplained {}  restarts {}  config writes {}",
        v.requests,
        v.failures,
        v.explained,
        v.unexplained,
        report.restarts.len(),
        report.config_writes
    );
    println!(
        "  {:<14} {:>12} {:>12} {:>12} {:>8} {:>8} {:>8}",
        "daemon", "rss early", "rss late", "rss max", "growth", "fds early", "fds late"
    );
    for g in &v.growth {
        println!(
            "  {:<14} {:>9} KiB {:>9} KiB {:>9} KiB {:>7.1}% {:>8} {:>8}",
            g.daemon,
            g.rss_early_kib,
            g.rss_late_kib,
            g.rss_max_kib,
            g.rss_ratio() * 100.0,
            g.fds_early,
            g.fds_late
        );
    }
    println!(
        "  {} (unexplained failures 0 and memory growth under {:.0}% per daemon)",
        if v.passed() { "PASS" } else { "FAIL" },
        RSS_GROWTH_LIMIT * 100.0
    );
}
