//! `cargo xtask bench l7`: HTTP through the L7 waypoint against a stock
//! Envoy fed the same routes by the same control plane, the same for the
//! ingress gateway (`mesh-waypoint --role gateway` against Envoy as a
//! gateway pod, `bench_l7_ingress.rs`), and against no proxy at all, in
//! one run on one machine (see `bench_l7_topology.rs`).
//! `MESH_BENCH_ONLY=waypoint|ingress` runs one of the two pairs.
//!
//! Each proxy runs with one worker pinned to one CPU (`taskset`), so its
//! throughput is per core. For HTTP/1.1 and h2c: closed loop (maximum
//! requests per second), then open loop at the same offered load for every
//! path (a fraction of Envoy's maximum) for p50/p99 measured from intended
//! send times. RSS (VmRSS) of each proxy idle and under load. The table
//! ends with mesh-waypoint / Envoy ratios against the targets in
//! `docs/benchmarks.md`.
use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::{
    bench::{cpu_seconds, status_kib, verdict},
    bench_l7_ingress::{GW_ENVOY, GW_MESH, INGRESS_HOST},
    bench_l7_topology::{Bed, Cpus, Programs, HOST},
    lab_args::L7Args,
    step,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "h2c",
        }
    }
}

/// One path's figures for one protocol.
#[derive(Debug, Default, Clone)]
struct Row {
    max_rps: f64,
    /// Requests per CPU-second of the proxy during the closed loop.
    rps_per_cpu: Option<f64>,
    p50_us: f64,
    p99_us: f64,
    /// Transport errors of both runs plus open-loop requests never sent
    /// (due while every connection was still busy at the end).
    errors: u64,
}

/// One path: its rows and its RSS.
#[derive(Debug, Default, Clone)]
struct Measured {
    name: &'static str,
    h1: Row,
    h2: Row,
    rss_idle_mb: Option<f64>,
    rss_load_mb: Option<f64>,
    /// Open-loop offered load per protocol (rps).
    offered: [f64; 2],
}

impl Measured {
    fn row(&mut self, p: Proto) -> &mut Row {
        match p {
            Proto::H1 => &mut self.h1,
            Proto::H2 => &mut self.h2,
        }
    }
}

const PROTOS: [Proto; 2] = [Proto::H1, Proto::H2];

/// Which proxies a pair compares: both as waypoints (`:15080`, the
/// waypoint's routes) or both as ingress gateways (`:80`, a Gateway's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Waypoint,
    Ingress,
}

impl Role {
    /// `MESH_BENCH_ONLY=waypoint|ingress` runs one role; unset, both.
    fn selected(only: &str) -> anyhow::Result<Vec<Role>> {
        match only {
            "" => Ok(vec![Role::Waypoint, Role::Ingress]),
            "waypoint" => Ok(vec![Role::Waypoint]),
            "ingress" => Ok(vec![Role::Ingress]),
            other => bail!("MESH_BENCH_ONLY={other}: bench l7 runs `waypoint` or `ingress`"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Role::Waypoint => "waypoint",
            Role::Ingress => "ingress",
        }
    }

    /// `Host` the load carries.
    fn host(self) -> &'static str {
        match self {
            Role::Waypoint => HOST,
            Role::Ingress => INGRESS_HOST,
        }
    }
}

/// Envoy and mesh-waypoint in one role.
struct Pair {
    role: Role,
    envoy: Measured,
    ours: Measured,
}

pub fn run(opts: L7Args) -> anyhow::Result<()> {
    crate::require_root("cargo xtask bench l7")?;
    anyhow::ensure!(
        opts.duration > 0.0 && opts.duration <= 300.0,
        "--duration {}: between 0 and 300 s",
        opts.duration
    );
    anyhow::ensure!(
        opts.load > 0.0 && opts.load <= 1.0,
        "--load {}: a fraction in (0, 1]",
        opts.load
    );
    let roles = Role::selected(&std::env::var("MESH_BENCH_ONLY").unwrap_or_default())?;
    let envoy =
        mesh_e2e::envoy::envoy_bin().map_err(|e| anyhow::anyhow!("bench l7 needs Envoy: {e}"))?;
    let programs = programs(envoy)?;
    let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let cpus = Cpus::for_machine(ncpu);
    step(format!(
        "topology: client, waypoints envoy and waypoint, gateways gw-envoy and gw-mesh, upstream pods; proxy on CPU {}, upstream on {}, loadgen on {}",
        cpus.proxy, cpus.upstream, cpus.loadgen
    ));
    let bed = Bed::new(&programs, cpus)?;

    let mut direct = Measured {
        name: "direct (no proxy)",
        ..Default::default()
    };
    for p in PROTOS {
        step(format!("direct, {}: closed loop", p.label()));
        let r = load(&bed, &programs, &opts, bed.upstream_addr(), HOST, p, None)?;
        *direct.row(p) = closed_row(&r, None);
    }
    let mut pairs = vec![];
    for role in roles {
        pairs.push(measure_pair(&bed, &programs, &opts, role)?);
    }
    // The direct path at the first pair's offered load, for reference.
    direct.offered = pairs[0].envoy.offered;
    for (i, p) in PROTOS.into_iter().enumerate() {
        step(format!(
            "direct, {}: open loop at {:.0} rps",
            p.label(),
            direct.offered[i]
        ));
        let addr = bed.upstream_addr();
        let r = load(
            &bed,
            &programs,
            &opts,
            addr,
            HOST,
            p,
            Some(direct.offered[i]),
        )?;
        open_row(direct.row(p), &r);
    }

    print_table(&opts, &direct, &pairs);
    Ok(())
}

/// Envoy, then mesh-waypoint, in `role`: closed loop for each protocol,
/// then open loop at `--load` of Envoy's maximum.
fn measure_pair(bed: &Bed, programs: &Programs, opts: &L7Args, role: Role) -> anyhow::Result<Pair> {
    let (envoy_name, ours_name) = match role {
        Role::Waypoint => ("Envoy --concurrency 1", "mesh-waypoint --worker-threads 1"),
        Role::Ingress => ("Envoy gateway, 1 worker", "mesh-waypoint --role gateway"),
    };
    let mut envoy_path = Measured {
        name: envoy_name,
        ..Default::default()
    };
    let mut ours = Measured {
        name: ours_name,
        ..Default::default()
    };
    let host = role.host();

    step(format!("starting Envoy ({})", role.label()));
    let (e, addr) = match role {
        Role::Waypoint => (bed.start_envoy(&programs.envoy)?, bed.proxy_addr("envoy")),
        Role::Ingress => (
            bed.start_envoy_gateway(&programs.envoy)?,
            bed.gateway_addr(GW_ENVOY),
        ),
    };
    envoy_path.rss_idle_mb = Some(rss_mb(e.pid())?);
    for (i, p) in PROTOS.into_iter().enumerate() {
        step(format!(
            "Envoy ({}), {}: closed loop",
            role.label(),
            p.label()
        ));
        let (r, cpu, rss) = under_load(e.pid(), || load(bed, programs, opts, addr, host, p, None))?;
        *envoy_path.row(p) = closed_row(&r, Some(cpu));
        envoy_path.rss_load_mb = Some(envoy_path.rss_load_mb.unwrap_or(0.0).max(rss));
        envoy_path.offered[i] = (envoy_path.row(p).max_rps * opts.load).max(1.0);
    }
    let offered = envoy_path.offered;
    for (i, p) in PROTOS.into_iter().enumerate() {
        step(format!(
            "Envoy ({}), {}: open loop at {:.0} rps",
            role.label(),
            p.label(),
            offered[i]
        ));
        let r = load(bed, programs, opts, addr, host, p, Some(offered[i]))?;
        open_row(envoy_path.row(p), &r);
    }
    drop(e);

    step(format!("starting mesh-waypoint ({})", role.label()));
    let (w, addr) = match role {
        Role::Waypoint => (
            bed.start_waypoint(&programs.waypoint)?,
            bed.proxy_addr("waypoint"),
        ),
        Role::Ingress => (
            bed.start_mesh_gateway(&programs.waypoint)?,
            bed.gateway_addr(GW_MESH),
        ),
    };
    ours.rss_idle_mb = Some(rss_mb(w.pid())?);
    ours.offered = offered;
    for p in PROTOS {
        step(format!(
            "mesh-waypoint ({}), {}: closed loop",
            role.label(),
            p.label()
        ));
        let (r, cpu, rss) = under_load(w.pid(), || load(bed, programs, opts, addr, host, p, None))?;
        *ours.row(p) = closed_row(&r, Some(cpu));
        ours.rss_load_mb = Some(ours.rss_load_mb.unwrap_or(0.0).max(rss));
    }
    for (i, p) in PROTOS.into_iter().enumerate() {
        step(format!(
            "mesh-waypoint ({}), {}: open loop at {:.0} rps",
            role.label(),
            p.label(),
            offered[i]
        ));
        let r = load(bed, programs, opts, addr, host, p, Some(offered[i]))?;
        open_row(ours.row(p), &r);
    }
    Ok(Pair {
        role,
        envoy: envoy_path,
        ours,
    })
}

/// The release binaries `cargo xtask bench` built beside `mesh-lab`, and Envoy.
fn programs(envoy: std::path::PathBuf) -> anyhow::Result<Programs> {
    let bins = crate::binaries()?;
    let loadgen = crate::bin_dir()?.join("loadgen");
    anyhow::ensure!(loadgen.is_file(), "{} is missing", loadgen.display());
    Ok(Programs {
        control: bins.control,
        podhttp: bins.podhttp,
        loadgen,
        envoy,
        waypoint: bins.waypoint,
    })
}

/// One `loadgen` run from the client pod; its JSON summary.
fn load(
    bed: &Bed,
    programs: &Programs,
    opts: &L7Args,
    addr: std::net::SocketAddr,
    host: &str,
    proto: Proto,
    rate: Option<f64>,
) -> anyhow::Result<Value> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &bed.cpus.loadgen])
        .arg(&programs.loadgen)
        .arg("--netns")
        .arg(bed.netns("client"))
        .args(["--url", &format!("http://{addr}/bench")])
        .args(["--header", &format!("host:{host}")])
        .args(["--duration", &opts.duration.to_string()])
        .args(["--requests", "100000000"])
        .args(["--threads", &bed.cpus.loadgen_threads.to_string()]);
    match proto {
        Proto::H1 => {
            cmd.args(["--connections", &opts.h1_connections.to_string()]);
        }
        Proto::H2 => {
            cmd.args(["--h2", "--connections", &opts.h2_connections.to_string()])
                .args(["--concurrency", &opts.h2_streams.to_string()]);
        }
    }
    if let Some(rate) = rate {
        cmd.args(["--rate", &format!("{rate:.1}")]);
    }
    let out = cmd.output().context("running loadgen")?;
    if !out.status.success() {
        bail!(
            "loadgen against {addr} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("loadgen printed nothing")?;
    let v: Value = serde_json::from_str(line).context("loadgen output is not JSON")?;
    let ok = v["status"]["200"].as_u64().unwrap_or(0);
    let total = v["requests"].as_u64().unwrap_or(0);
    if ok == 0 || ok < total {
        bail!("{addr} ({}): not every answer was 200: {v}", proto.label());
    }
    Ok(v)
}

/// Runs `f` while sampling `pid`'s VmRSS; returns its result, the CPU
/// seconds `pid` spent meanwhile and the largest RSS seen (MB).
fn under_load(
    pid: u32,
    f: impl FnOnce() -> anyhow::Result<Value>,
) -> anyhow::Result<(Value, f64, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let sampler = std::thread::spawn(move || {
        let mut max_kib = 0;
        while !flag.load(Ordering::Relaxed) {
            max_kib = max_kib.max(status_kib(pid, "VmRSS").unwrap_or(0));
            std::thread::sleep(Duration::from_millis(100));
        }
        max_kib
    });
    let cpu0 = cpu_seconds(pid)?;
    let result = f();
    let cpu = cpu_seconds(pid)? - cpu0;
    stop.store(true, Ordering::Relaxed);
    let max_kib = sampler.join().unwrap_or(0);
    Ok((result?, cpu, max_kib as f64 / 1024.0))
}

/// mesh-waypoint / Envoy: requests per CPU-second of the proxy (its
/// throughput per core whether or not the core was saturated; the plain
/// rate when the CPU time is unknown), and p99 at the same offered load.
fn ratios(wp: &Row, envoy: &Row) -> (f64, f64) {
    let per_core = |r: &Row| r.rps_per_cpu.unwrap_or(r.max_rps);
    (per_core(wp) / per_core(envoy), wp.p99_us / envoy.p99_us)
}

fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    Ok(status_kib(pid, "VmRSS")? as f64 / 1024.0)
}

fn closed_row(v: &Value, cpu_seconds: Option<f64>) -> Row {
    let requests = v["requests"].as_f64().unwrap_or(0.0);
    Row {
        max_rps: v["rps"].as_f64().unwrap_or(0.0),
        rps_per_cpu: cpu_seconds.filter(|c| *c > 0.0).map(|c| requests / c),
        errors: v["errors"].as_u64().unwrap_or(0),
        ..Row::default()
    }
}

fn open_row(row: &mut Row, v: &Value) {
    row.p50_us = v["p50_us"].as_f64().unwrap_or(f64::NAN);
    row.p99_us = v["p99_us"].as_f64().unwrap_or(f64::NAN);
    row.errors += v["errors"].as_u64().unwrap_or(0) + v["unsent"].as_u64().unwrap_or(0);
}

fn mb(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |m| format!("{m:.1}"))
}

fn print_table(opts: &L7Args, direct: &Measured, pairs: &[Pair]) {
    println!();
    println!(
        "bench l7: {:.0} s per run; proxies with one worker pinned to one CPU; open loop at {:.0}% of each role's Envoy max",
        opts.duration,
        opts.load * 100.0
    );
    println!("  (failed = transport errors + open-loop requests still unsent at the end)");
    println!(
        "  {:<32} {:<9} {:>10} {:>12} {:>10} {:>9} {:>9} {:>7}   {:>8} {:>8}",
        "path",
        "protocol",
        "max rps",
        "rps/CPU-s",
        "offered",
        "p50 us",
        "p99 us",
        "failed",
        "RSS idle",
        "RSS load"
    );
    let mut paths = vec![direct];
    for pair in pairs {
        paths.extend([&pair.envoy, &pair.ours]);
    }
    for path in paths {
        for (i, p) in PROTOS.into_iter().enumerate() {
            let r = match p {
                Proto::H1 => &path.h1,
                Proto::H2 => &path.h2,
            };
            println!(
                "  {:<32} {:<9} {:>10.0} {:>12} {:>10.0} {:>9.0} {:>9.0} {:>7}   {:>8} {:>8}",
                path.name,
                p.label(),
                r.max_rps,
                r.rps_per_cpu
                    .map_or_else(|| "-".into(), |x| format!("{x:.0}")),
                path.offered[i],
                r.p50_us,
                r.p99_us,
                r.errors,
                mb(path.rss_idle_mb),
                mb(path.rss_load_mb),
            );
        }
    }
    for pair in pairs {
        for p in PROTOS {
            let d = match p {
                Proto::H1 => &direct.h1,
                Proto::H2 => &direct.h2,
            };
            let e = match p {
                Proto::H1 => &pair.envoy.h1,
                Proto::H2 => &pair.envoy.h2,
            };
            if e.max_rps > 0.8 * d.max_rps {
                println!(
                    "  note ({}, {}): Envoy reached {:.0}% of the direct rate: the client side may be the limit, ratios understate the proxies' difference",
                    pair.role.label(),
                    p.label(),
                    100.0 * e.max_rps / d.max_rps
                );
            }
        }
    }
    for pair in pairs {
        println!("  mesh-waypoint / Envoy, {}:", pair.role.label());
        for p in PROTOS {
            let (e, w) = match p {
                Proto::H1 => (&pair.envoy.h1, &pair.ours.h1),
                Proto::H2 => (&pair.envoy.h2, &pair.ours.h2),
            };
            let (rps_ratio, p99_ratio) = ratios(w, e);
            println!(
                "    {:<9} rps/core {rps_ratio:>5.2}x  target >= 1.50x {:<7}  p99 at the same load {p99_ratio:>5.2}x  target <= 0.70x {}",
                p.label(),
                verdict(rps_ratio >= 1.5),
                verdict(p99_ratio <= 0.7)
            );
        }
        let rss = pair.ours.rss_load_mb.unwrap_or(f64::NAN);
        println!(
            "    RSS under load {rss:.1} MB (Envoy {}), target <= 25 MB {}",
            mb(pair.envoy.rss_load_mb),
            verdict(rss <= 25.0)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn closed_loop_row_is_per_cpu_second() {
        let v = json!({"requests": 30000, "rps": 10000.0, "errors": 2});
        let row = closed_row(&v, Some(1.5));
        assert_eq!(row.max_rps, 10000.0);
        assert_eq!(row.rps_per_cpu, Some(20000.0));
        assert_eq!(row.errors, 2);
        assert_eq!(closed_row(&v, Some(0.0)).rps_per_cpu, None);
        assert_eq!(closed_row(&v, None).rps_per_cpu, None);
    }

    #[test]
    fn open_loop_row_counts_unsent_as_failed() {
        let mut row = Row {
            errors: 1,
            ..Row::default()
        };
        open_row(
            &mut row,
            &json!({"p50_us": 120, "p99_us": 900, "errors": 2, "unsent": 3}),
        );
        assert_eq!((row.p50_us, row.p99_us, row.errors), (120.0, 900.0, 6));
    }

    #[test]
    fn mesh_bench_only_selects_the_roles() {
        assert_eq!(
            Role::selected("").unwrap(),
            vec![Role::Waypoint, Role::Ingress]
        );
        assert_eq!(Role::selected("ingress").unwrap(), vec![Role::Ingress]);
        assert_eq!(Role::selected("waypoint").unwrap(), vec![Role::Waypoint]);
        let err = Role::selected("same").unwrap_err().to_string();
        assert!(err.contains("MESH_BENCH_ONLY=same"), "{err}");
        assert_eq!(Role::Ingress.host(), INGRESS_HOST);
        assert_eq!(Role::Waypoint.host(), HOST);
    }

    #[test]
    fn ratios_against_envoy() {
        let envoy = Row {
            max_rps: 8000.0,
            rps_per_cpu: Some(20000.0),
            p99_us: 1000.0,
            ..Row::default()
        };
        let wp = Row {
            max_rps: 12000.0,
            rps_per_cpu: Some(40000.0),
            p99_us: 600.0,
            ..Row::default()
        };
        assert_eq!(ratios(&wp, &envoy), (2.0, 0.6));
        let no_cpu = Row {
            rps_per_cpu: None,
            ..wp.clone()
        };
        assert_eq!(ratios(&no_cpu, &envoy).0, 0.6);
    }
}
