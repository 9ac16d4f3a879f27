//! `cargo xtask bench l4`: pod→pod through the agent against the same pods
//! talking directly, measured in the same run on the same topology.
//!
//! Throughput: one TCP stream uploading `--bytes` to a sink (median of
//! `--repeats`). Latency: 1-byte request/response on one connection,
//! `--rounds` round trips, p50/p99. Agent: CPU seconds (utime+stime from
//! /proc) spent during the meshed runs, and peak RSS (VmHWM).
use mesh_e2e::Topology;
use serde_json::Value;

use crate::{lab_args::BenchArgs, step};

const ECHO: u16 = 9080;
const SINK: u16 = 9090;

pub fn run(which: BenchArgs) -> anyhow::Result<()> {
    let (bytes, repeats, rounds) = match which {
        BenchArgs::L4 {
            bytes,
            repeats,
            rounds,
        } => (bytes, repeats, rounds),
        BenchArgs::L7(opts) => return crate::bench_l7::run(opts),
    };
    crate::require_root("cargo xtask bench")?;
    // MESH_BENCH_ONLY=same|cross|policy runs one part (for iterating on one path).
    let only = std::env::var("MESH_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "same" {
        same_node(bytes, repeats, rounds)?;
    }
    if only != "same" && only != "policy" {
        cross_node(bytes, repeats, rounds)?;
    }
    if only.is_empty() || only == "policy" {
        crate::bench_policy::run(bytes, repeats, rounds)?;
    }
    Ok(())
}

fn same_node(bytes: u64, repeats: u32, rounds: u32) -> anyhow::Result<()> {
    step("same node, plaintext: pods `meshed` (enrolled), `direct` (not enrolled), `server`");
    let mut topo = Topology::new(
        "mbench",
        crate::binaries()?,
        &["meshed", "direct", "server"],
    )?;
    topo.start_agent()?;
    topo.serve("server", ECHO, Some(SINK))?;
    topo.agent().enroll(topo.pod("meshed"), &[])?;
    let pid = topo.agent().pid();
    let sink = topo.pod("server").addr(SINK).to_string();
    let echo = topo.pod("server").addr(ECHO).to_string();
    let bytes_arg = bytes.to_string();
    let rounds_arg = rounds.to_string();

    let mut direct_tp = vec![];
    let mut mesh_tp = vec![];
    let mut mesh_cpu = 0.0;
    for i in 1..=repeats {
        step(format!(
            "throughput run {i}/{repeats}: {} MiB direct, then through the agent",
            bytes >> 20
        ));
        direct_tp.push(gbit(&topo.client(
            "direct",
            &["stream", "--to", &sink, "--bytes", &bytes_arg],
        )?)?);
        let cpu0 = cpu_seconds(pid)?;
        mesh_tp.push(gbit(&topo.client(
            "meshed",
            &["stream", "--to", &sink, "--bytes", &bytes_arg],
        )?)?);
        mesh_cpu += cpu_seconds(pid)? - cpu0;
    }
    let mut direct_rr = vec![];
    let mut mesh_rr = vec![];
    let mut rr_cpu = 0.0;
    for i in 1..=repeats {
        step(format!(
            "latency run {i}/{repeats}: {rounds} 1-byte round trips direct, then through the agent"
        ));
        direct_rr.push(topo.client("direct", &["rr", "--to", &echo, "--count", &rounds_arg])?);
        let cpu0 = cpu_seconds(pid)?;
        mesh_rr.push(topo.client("meshed", &["rr", "--to", &echo, "--count", &rounds_arg])?);
        rr_cpu += cpu_seconds(pid)? - cpu0;
    }
    let hwm_kib = status_kib(pid, "VmHWM")?;
    let rss_kib = status_kib(pid, "VmRSS")?;
    let carried = topo.agent().connections()?["totals"]["accepted"]
        .as_u64()
        .unwrap_or(0);
    anyhow::ensure!(
        carried == 2 * u64::from(repeats),
        "agent carried {carried} connections, expected {}",
        2 * repeats
    );

    let (dt, mt) = (median(&mut direct_tp), median(&mut mesh_tp));
    // Median over runs of each run's percentile, in microseconds.
    let us = |runs: &[Value], k: &str| {
        let mut v: Vec<f64> = runs
            .iter()
            .map(|r| r[k].as_f64().unwrap_or(f64::NAN) / 1000.0)
            .collect();
        median(&mut v)
    };
    let (d50, d99) = (us(&direct_rr, "p50_ns"), us(&direct_rr, "p99_ns"));
    let (m50, m99) = (us(&mesh_rr, "p50_ns"), us(&mesh_rr, "p99_ns"));
    let tp_ratio = mt / dt;
    let added = m50 - d50;
    let rss_mb = hwm_kib as f64 / 1024.0;
    println!();
    println!("bench l4 (plaintext, one node, same run)      direct      mesh     ratio");
    println!("  throughput, Gbit/s (median of {repeats})         {dt:>9.2} {mt:>9.2}   {tp_ratio:>6.2}x   target >= 0.60x  {}", verdict(tp_ratio >= 0.6));
    println!("  1-byte RR p50, us (median of {repeats})                        {d50:>9.1} {m50:>9.1}   +{added:.1} us   target <= +25 us {}", verdict(added <= 25.0));
    println!("  1-byte RR p99, us (median of {repeats})                        {d99:>9.1} {m99:>9.1}   {:>6.2}x", m99 / d99);
    println!(
        "  agent CPU seconds: {mesh_cpu:.2} for {} MiB meshed, {rr_cpu:.2} for {} round trips",
        (bytes * u64::from(repeats)) >> 20,
        u64::from(rounds) * u64::from(repeats)
    );
    println!(
        "  agent peak RSS (VmHWM): {rss_mb:.1} MB, RSS after load {:.1} MB   target <= 15 MB  {}",
        rss_kib as f64 / 1024.0,
        verdict(rss_mb <= 15.0)
    );
    Ok(())
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

pub fn gbit(v: &Value) -> anyhow::Result<f64> {
    v["gbit_per_s"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("no throughput in {v}"))
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(ticks as f64 / hz)
}

pub fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow::anyhow!("{key} missing from /proc/{pid}/status"))
}

/// One path's measurements.
struct PathFigures {
    gbit: f64,
    p50_us: f64,
    p99_us: f64,
    setup_p50_us: f64,
}

fn measure(
    c: &mesh_e2e::cluster::Cluster,
    pod: &str,
    sink: &str,
    echo: &str,
    bytes: u64,
    rounds: u32,
) -> anyhow::Result<PathFigures> {
    let stream = c.client(
        pod,
        &["stream", "--to", sink, "--bytes", &bytes.to_string()],
    )?;
    let rr = c.client(pod, &["rr", "--to", echo, "--count", &rounds.to_string()])?;
    let setup = c.client(pod, &["conn-rr", "--to", echo, "--count", "300"])?;
    let us = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    Ok(PathFigures {
        gbit: gbit(&stream)?,
        p50_us: us(&rr, "p50_ns"),
        p99_us: us(&rr, "p99_ns"),
        setup_p50_us: us(&setup, "p50_ns"),
    })
}

/// Two nodes, HBONE mTLS between them, against the same pods talking
/// directly across the same link.
fn cross_node(bytes: u64, repeats: u32, rounds: u32) -> anyhow::Result<()> {
    step(
        "cross node, HBONE mTLS: node1 pods `meshed` (enrolled) and `direct` (not), node2 `server`",
    );
    let mut c = mesh_e2e::cluster::Cluster::new(
        "mbench",
        crate::binaries()?,
        &[("node1", &["meshed", "direct"]), ("node2", &["server"])],
    )?;
    c.start_control(&[])?;
    c.start_agent("node1", &[])?;
    c.start_agent("node2", &[])?;
    c.agent("node1").unenroll(c.pod("direct"))?;
    c.serve("server", ECHO, Some(SINK))?;
    c.wait_ready("node1", 3, &["meshed"])?;
    c.wait_ready("node2", 3, &["server"])?;
    let sink = c.pod("server").addr(SINK).to_string();
    let echo = c.pod("server").addr(ECHO).to_string();
    let pids = [c.agent("node1").pid(), c.agent("node2").pid()];
    let mut direct = vec![];
    let mut mesh = vec![];
    let mut cpu = 0.0;
    for i in 1..=repeats {
        step(format!(
            "cross-node run {i}/{repeats}: direct, then over HBONE"
        ));
        direct.push(measure(&c, "direct", &sink, &echo, bytes, rounds)?);
        let cpu0: f64 = pids.iter().map(|p| cpu_seconds(*p).unwrap_or(0.0)).sum();
        mesh.push(measure(&c, "meshed", &sink, &echo, bytes, rounds)?);
        cpu += pids
            .iter()
            .map(|p| cpu_seconds(*p).unwrap_or(0.0))
            .sum::<f64>()
            - cpu0;
    }
    let med = |v: &[PathFigures], f: fn(&PathFigures) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        median(&mut x)
    };
    let (dt, mt) = (med(&direct, |p| p.gbit), med(&mesh, |p| p.gbit));
    let (d50, m50) = (med(&direct, |p| p.p50_us), med(&mesh, |p| p.p50_us));
    let (d99, m99) = (med(&direct, |p| p.p99_us), med(&mesh, |p| p.p99_us));
    let (ds, ms) = (
        med(&direct, |p| p.setup_p50_us),
        med(&mesh, |p| p.setup_p50_us),
    );
    let rss: Vec<f64> = pids
        .iter()
        .map(|p| status_kib(*p, "VmHWM").unwrap_or(0) as f64 / 1024.0)
        .collect();
    let rss_max = rss.iter().copied().fold(0.0, f64::max);
    println!();
    println!("bench l4 (cross node, HBONE mTLS vs direct, same run)  direct      mesh     ratio");
    println!(
        "  throughput, Gbit/s (median of {repeats})                {dt:>9.2} {mt:>9.2}   {:>6.2}x   target >= 0.45x  {}",
        mt / dt,
        verdict(mt / dt >= 0.45)
    );
    println!(
        "  1-byte RR p50, us                               {d50:>9.1} {m50:>9.1}   +{:.1} us   target <= 60 us  {}",
        m50 - d50,
        verdict(m50 <= 60.0)
    );
    println!(
        "  1-byte RR p99, us                               {d99:>9.1} {m99:>9.1}   {:>6.2}x",
        m99 / d99
    );
    println!(
        "  new connection + 1 RT, p50, us                  {ds:>9.1} {ms:>9.1}   {:>6.2}x   target <= 500 us {}",
        ms / ds,
        verdict(ms <= 500.0)
    );
    println!("  agents' CPU seconds during the meshed runs: {cpu:.2}");
    println!(
        "  agent peak RSS (VmHWM): node1 {:.1} MB, node2 {:.1} MB   target <= 20 MB  {}",
        rss[0],
        rss[1],
        verdict(rss_max <= 20.0)
    );
    Ok(())
}
