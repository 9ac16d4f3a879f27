//! `cargo xtask bench scale`: configuration at scale through the control
//! plane to several agents and a waypoint.
//!
//! The lab cluster (`mesh_e2e::cluster`) gives an underlay with
//! mesh-control (directory source, polled every [`RELOAD_INTERVAL`]) and
//! `--agents` nodes, node 1 holding the waypoint's pod. The generated
//! configuration ([`config`]) is written into the source directory before
//! mesh-control starts. Then every agent (the real `mesh-agent run`, in
//! its node's namespace, its programs attached to the node's empty cgroup)
//! and the waypoint (the real `mesh-waypoint`) start at once.
//!
//! What "applied" means, per subscriber:
//! - an agent: it logged "mesh view updated" with the final counts
//!   (workloads, services, policies), with its own timestamp: the view the
//!   data path reads was rebuilt from the xDS snapshot ([`watch`]);
//! - the waypoint: full push, `/ready` (every type received and applied);
//!   a change, its stream SYNCED in mesh-control's `/debug/syncz` at the
//!   new server version (the xDS client publishes the snapshot before it
//!   ACKs; the route table is rebuilt from it right after).
//!
//! A change is one more pod of service 0 (its Address, and its endpoint
//! at the waypoint) or one more AuthorizationPolicy, written by rename
//! into the directory; its latency runs from just before the rename to
//! the last subscriber's "applied". Changes alternate, one at a time.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _};
use mesh_e2e::cluster::{Cluster, CONTROL_ADMIN, CONTROL_IP};

use crate::{
    bench::{cpu_seconds, status_kib, verdict},
    lab_args::ScaleArgs,
    step,
};

#[path = "bench_scale_config.rs"]
pub mod config;
#[path = "bench_scale_watch.rs"]
pub mod watch;

use watch::{ms_between, LogTail, Syncz};

/// How often mesh-control polls its directory in this bench: the floor
/// of every change's latency (half of it on average).
const RELOAD_INTERVAL: &str = "20ms";
/// The agents log their view rebuilds (debug, module `mesh_agent::mesh`).
const AGENT_LOG: &str = "info,mesh_agent::mesh=debug,mesh_agent::mesh::certs=info";
/// The whole first push may take this long before the bench gives up.
const FULL_PUSH_LIMIT: Duration = Duration::from_secs(180);
/// One change may take this long.
const CHANGE_LIMIT: Duration = Duration::from_secs(30);
/// Between changes, so each starts from a quiet system.
const CHANGE_GAP: Duration = Duration::from_millis(100);

/// Agents started by the bench; terminated on drop (before the cluster,
/// which removes their pins and logs).
struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for child in &mut self.0 {
            mesh_e2e::cmd::terminate(child);
        }
    }
}

pub fn run(args: &ScaleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=9).contains(&args.agents),
        "--agents must be 1 to 9 (got {})",
        args.agents
    );
    anyhow::ensure!(args.services >= 2, "--services must be at least 2");
    let bins = crate::binaries()?;
    let started = Instant::now();
    let names: Vec<String> = (1..=args.agents).map(|i| format!("node{i}")).collect();
    let nodes: Vec<(&str, &[&str])> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), if i == 0 { &["wp"][..] } else { &[][..] }))
        .collect();
    step(format!(
        "config at scale: {} workloads, {} services, {} agents + 1 waypoint, {} changes",
        args.workloads, args.services, args.agents, args.changes
    ));
    let mut c = Cluster::new("scale", bins.clone(), &nodes)?;
    c.declare_waypoint("wp", config::WAYPOINT)?;
    let shape = config::Shape {
        workloads: args.workloads,
        services: args.services,
        agent_nodes: args.agents,
    };
    let mut bytes = 0;
    for (file, yaml) in config::files(&shape) {
        bytes += yaml.len();
        c.write_config(&file, &yaml)?;
    }
    step(format!(
        "configuration written: {:.1} MB of YAML in {}",
        bytes as f64 / 1e6,
        c.config_dir().display()
    ));

    let load_started = Instant::now();
    c.start_control(&["--reload-interval", RELOAD_INTERVAL, "--log", "info"])?;
    let control_pid = c
        .control
        .as_ref()
        .map(|p| p.pid())
        .context("no control plane")?;
    let syncz = |c: &Cluster| -> anyhow::Result<Syncz> {
        let body = mesh_e2e::netns::http_get_in(&c.underlay.path(), CONTROL_ADMIN, "/debug/syncz")?;
        Syncz::parse(&body)
    };
    mesh_testkit::try_eventually("mesh-control serving", FULL_PUSH_LIMIT, || syncz(&c))?;
    let load_s = load_started.elapsed().as_secs_f64();
    let cpu_load = cpu_seconds(control_pid)?;
    step(format!(
        "mesh-control loaded the configuration in {load_s:.2} s"
    ));

    // Every subscriber at once.
    step("full push: starting the agents and the waypoint");
    let mut agents = Agents(Vec::new());
    let mut tails = Vec::new();
    let mut spawned = Vec::new();
    let mut logs = Vec::new();
    for node in &names {
        let spec = c.agent_spec(node, &["--dns-proxy=false"]);
        let _ = std::fs::remove_file(&spec.log);
        let out = std::fs::File::create(&spec.log)?;
        spawned.push(SystemTime::now());
        let child = Command::new("nsenter")
            .arg(format!("--net={}", spec.node_netns.display()))
            .arg("--")
            .arg(&spec.bin)
            .args(["--instance", &spec.instance, "--log", AGENT_LOG, "run"])
            .arg("--cgroup-root")
            .arg(&spec.cgroup_root)
            .args(["--redirect-ipv4", &spec.redirect_ipv4.to_string()])
            .args(&spec.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("starting mesh-agent")?;
        agents.0.push(child);
        tails.push(LogTail::new(spec.log.clone()));
        logs.push(spec.log);
    }
    let wp_spawned = Instant::now();
    let wp = {
        let p = c.pod("wp");
        let node = mesh_e2e::envoy::WaypointNode {
            pod_ip: p.ip.into(),
            pod_name: "wp".into(),
            namespace: "default".into(),
            waypoint: config::WAYPOINT.into(),
        };
        let spec = mesh_e2e::waypoint::WaypointSpec::new(
            node,
            "wp",
            std::net::SocketAddr::from((CONTROL_IP, 15010)),
        );
        let netns = p.netns.path();
        let dir = c.dir.join("waypoint-wp");
        mesh_e2e::waypoint::MeshWaypoint::start(&bins.waypoint, spec, Some(&netns), &dir)?
    };
    c.waypoints.push(wp);
    let mut wp_full_ms = None;
    let deadline = Instant::now() + FULL_PUSH_LIMIT;
    let subscribers = args.agents + 1;
    let mut last_report = Instant::now();
    let final_counts = loop {
        for (i, child) in agents.0.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "agent {} exited ({status}):\n{}",
                    names[i],
                    tail_of(&logs[i])
                );
            }
        }
        if wp_full_ms.is_none() {
            if let Ok((200, _)) = c.waypoints[0].admin_get("/ready") {
                wp_full_ms = Some(wp_spawned.elapsed().as_secs_f64() * 1e3);
            }
        }
        tails.iter_mut().for_each(|t| {
            t.poll();
        });
        let s = syncz(&c).ok();
        let synced = s.as_ref().is_some_and(|s| s.all_synced(subscribers));
        let lasts: Vec<_> = tails.iter().map(LogTail::last).collect();
        let big_enough = lasts.iter().all(|l| {
            l.is_some_and(|l| l.workloads >= args.workloads && l.policies >= shape.policies())
        });
        // Counts equal everywhere and every stream ACKed: the push is over.
        if synced && big_enough && wp_full_ms.is_some() {
            let first = lasts[0].expect("checked").counts();
            if lasts.iter().all(|l| l.map(|l| l.counts()) == Some(first)) {
                break first;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "full push not done after {FULL_PUSH_LIMIT:?}: syncz {s:?}, agents' last views {lasts:?}, waypoint ready: {}",
                wp_full_ms.is_some()
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            step(format!(
                "  waiting: agents' views {:?}",
                lasts
                    .iter()
                    .map(|l| l.map(|l| l.counts()))
                    .collect::<Vec<_>>()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut agent_full_ms = Vec::new();
    for (i, t) in tails.iter().enumerate() {
        let v = t
            .first_with(spawned[i], final_counts)
            .context("the agent's complete view vanished from its log")?;
        agent_full_ms.push(ms_between(spawned[i], v.at));
    }
    let cpu_push = cpu_seconds(control_pid)? - cpu_load;
    step(format!(
        "full push done: agents {:?} ms (workloads, services, policies = {final_counts:?}), waypoint {:.0} ms",
        agent_full_ms.iter().map(|m| m.round()).collect::<Vec<_>>(),
        wp_full_ms.unwrap_or(f64::NAN)
    ));
    std::thread::sleep(Duration::from_secs(1));

    // One change at a time.
    step(format!(
        "{} changes, each timed from write to applied everywhere",
        args.changes
    ));
    let cpu_before_changes = cpu_seconds(control_pid)?;
    let mut counts = final_counts;
    let (mut pods, mut policies) = (0, 0);
    let mut everywhere_ms = Vec::new();
    let mut ack_ms = Vec::new();
    for k in 0..args.changes {
        let before = syncz(&c)?.server_version;
        let expected = if k % 2 == 0 {
            pods += 1;
            (counts.0 + 1, counts.1, counts.2)
        } else {
            policies += 1;
            (counts.0, counts.1, counts.2 + 1)
        };
        let written = SystemTime::now();
        let t0 = Instant::now();
        if k % 2 == 0 {
            c.write_config(config::CHURN_PODS, &config::churn_pods(pods))?;
        } else {
            c.write_config(
                config::CHURN_POLICIES,
                &config::churn_policies(&shape, policies),
            )?;
        }
        let mut acked_at = None;
        let mut applied: Vec<Option<f64>> = vec![None; tails.len()];
        loop {
            if acked_at.is_none() {
                if let Ok(s) = syncz(&c) {
                    if s.server_version > before && s.all_synced(subscribers) {
                        acked_at = Some(t0.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            for (i, t) in tails.iter_mut().enumerate() {
                if applied[i].is_none() {
                    t.poll();
                    applied[i] = t
                        .first_with(written, expected)
                        .map(|v| ms_between(written, v.at));
                }
            }
            if acked_at.is_some() && applied.iter().all(Option::is_some) {
                break;
            }
            if t0.elapsed() > CHANGE_LIMIT {
                bail!(
                    "change {k} not applied everywhere after {CHANGE_LIMIT:?} (expected counts {expected:?}): ACK {acked_at:?}, agents {applied:?}, last views {:?}",
                    tails.iter().map(LogTail::last).collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        counts = expected;
        let ack = acked_at.expect("checked");
        let slowest_agent = applied.iter().flatten().copied().fold(0.0, f64::max);
        everywhere_ms.push(slowest_agent.max(ack));
        ack_ms.push(ack);
        if (k + 1) % 10 == 0 || k + 1 == args.changes {
            step(format!(
                "  {} changes done, last {:.1} ms",
                k + 1,
                everywhere_ms.last().copied().unwrap_or_default()
            ));
        }
        std::thread::sleep(CHANGE_GAP);
    }
    let cpu_changes = cpu_seconds(control_pid)? - cpu_before_changes;

    let agent_hwm = agents
        .0
        .iter()
        .map(|a| status_kib(a.id(), "VmHWM"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let agent_rss = agents
        .0
        .iter()
        .map(|a| status_kib(a.id(), "VmRSS"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let control_hwm = status_kib(control_pid, "VmHWM")?;
    let control_rss = status_kib(control_pid, "VmRSS")?;
    let wp_pid = c.waypoints[0].pid();
    let wp_hwm = status_kib(wp_pid, "VmHWM")?;

    let agent_full_max = agent_full_ms.iter().copied().fold(0.0, f64::max);
    let (p50, p99) = percentiles(&everywhere_ms);
    let (ack50, ack99) = percentiles(&ack_ms);
    let max_hwm = agent_hwm.iter().copied().max().unwrap_or_default();
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!(
        "config at scale: {} workloads, {} services, {} policies, {} agents + 1 waypoint, {} changes (directory polled every {RELOAD_INTERVAL})",
        args.workloads,
        args.services,
        shape.policies(),
        args.agents,
        args.changes
    );
    println!(
        "{:<48} {:>12} {:>14} {:>8}",
        "measure", "goal", "measured", "verdict"
    );
    let row = |name: &str, goal: &str, measured: String, ok: Option<bool>| {
        println!(
            "{name:<48} {goal:>12} {measured:>14} {:>8}",
            ok.map(verdict).unwrap_or("")
        );
    };
    row(
        "full push, slowest agent (spawn → view built)",
        "< 1000 ms",
        format!("{agent_full_max:.0} ms"),
        Some(agent_full_max < 1000.0),
    );
    row(
        "full push, waypoint (spawn → /ready)",
        "< 1000 ms",
        format!("{:.0} ms", wp_full_ms.unwrap_or(f64::NAN)),
        wp_full_ms.map(|m| m < 1000.0),
    );
    row(
        "change → applied everywhere, p50",
        "",
        format!("{p50:.1} ms"),
        None,
    );
    row(
        "change → applied everywhere, p99",
        "< 100 ms",
        format!("{p99:.1} ms"),
        Some(p99 < 100.0),
    );
    row(
        "change → ACKed by all streams, p50 / p99",
        "",
        format!("{ack50:.0} / {ack99:.0} ms"),
        None,
    );
    row(
        "agent peak RSS (VmHWM, largest)",
        "≤ 40 MB",
        format!("{:.1} MB", mb(max_hwm)),
        Some(mb(max_hwm) <= 40.0),
    );
    row(
        "agent RSS now (VmRSS, largest)",
        "",
        format!(
            "{:.1} MB",
            mb(agent_rss.iter().copied().max().unwrap_or_default())
        ),
        None,
    );
    row(
        "control plane peak RSS (VmHWM)",
        "≤ 200 MB",
        format!("{:.1} MB", mb(control_hwm)),
        Some(mb(control_hwm) <= 200.0),
    );
    row(
        "control plane RSS now (VmRSS)",
        "",
        format!("{:.1} MB", mb(control_rss)),
        None,
    );
    row(
        "waypoint peak RSS (VmHWM)",
        "",
        format!("{:.1} MB", mb(wp_hwm)),
        None,
    );
    row(
        "control plane CPU: initial load",
        "",
        format!("{cpu_load:.2} s ({load_s:.1} s wall)"),
        None,
    );
    row(
        "control plane CPU: full push",
        "",
        format!("{cpu_push:.2} s"),
        None,
    );
    row(
        "control plane CPU per change",
        "",
        format!("{:.0} ms", cpu_changes * 1e3 / args.changes.max(1) as f64),
        None,
    );
    println!(
        "(applied: agents = \"mesh view updated\" with the expected counts, by the agent's clock; waypoint = /ready for the full push, its stream SYNCED in /debug/syncz for a change; bench took {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    drop(agents);
    Ok(())
}

/// p50 and p99 (nearest rank) of `values`.
fn percentiles(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    (rank(0.50), rank(0.99))
}

/// The last 30 lines of a log.
fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
