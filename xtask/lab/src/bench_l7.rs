//! `cargo xtask bench l7`: HTTP through the L7 waypoint against a stock
//! Envoy fed the same routes by the same control plane, the same for the
//! ingress gateway (`mesh-waypoint --role gateway` against Envoy as a
//! gateway pod, `bench_l7_ingress.rs`), and against no proxy at all, in
//! one run on one machine (see `bench_l7_topology.rs`).
//! `MESH_BENCH_ONLY=waypoint|ingress` runs one of the two pairs;
//! `MESH_BENCH_L7_BASELINE=<mesh-waypoint binary>` measures that build in
//! Envoy's place (an interleaved A/B of two builds).
//!
//! Each proxy runs with one worker pinned to the same CPU (`taskset`), so
//! its throughput is per core. Both proxies of a pair run at once (the
//! idle one costs nothing) and every measurement alternates between them,
//! `--runs` times, Envoy first in odd runs and mesh-waypoint first in even
//! ones, so drift on the machine hits both alike. Per run and protocol
//! (HTTP/1.1, h2c): closed loop (maximum requests per second and requests
//! per proxy CPU-second), open loop at `--load` of that run's Envoy
//! maximum (p50/p99 from intended send times), and open loop at the fixed
//! `--rate` (vCPU per 1 k req/s from the proxy's utime + stime, RSS).
//! The report (`bench_l7/report.rs`) gives medians, and each
//! mesh-waypoint / Envoy ratio with its spread over the runs.
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
    bench::{cpu_seconds, status_kib},
    bench_l7_ingress::{GW_ENVOY, GW_MESH, INGRESS_HOST},
    bench_l7_topology::{Bed, Cpus, Programs, HOST},
    lab_args::L7Args,
    step,
};

mod report;

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

    fn index(self) -> usize {
        match self {
            Proto::H1 => 0,
            Proto::H2 => 1,
        }
    }
}

/// One run's figures of one path for one protocol.
#[derive(Debug, Default, Clone)]
struct Row {
    max_rps: f64,
    /// Requests per CPU-second of the proxy during the closed loop.
    rps_per_cpu: Option<f64>,
    /// Offered load of the open loop (rps).
    offered: f64,
    p50_us: f64,
    p99_us: f64,
    /// Transport errors of the runs plus open-loop requests never sent
    /// (due while every connection was still busy at the end).
    errors: u64,
    /// The open loop at the fixed `--rate` (proxies only).
    fixed: Option<Fixed>,
}

/// A proxy at the fixed offered load.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Fixed {
    /// Requests per second actually answered.
    rps: f64,
    /// CPU-seconds of the proxy per second of the run.
    vcpu: f64,
    p99_us: f64,
    /// Largest RSS seen during the run (MB).
    rss_mb: f64,
}

impl Fixed {
    fn vcpu_per_krps(&self) -> f64 {
        self.vcpu / (self.rps / 1000.0)
    }
}

/// One path: per protocol one row per run, and its RSS.
#[derive(Debug, Default, Clone)]
struct Measured {
    name: &'static str,
    runs: [Vec<Row>; 2],
    rss_idle_mb: Option<f64>,
    rss_load_mb: Option<f64>,
}

impl Measured {
    fn new(name: &'static str) -> Self {
        Measured {
            name,
            ..Default::default()
        }
    }

    fn rows(&self, p: Proto) -> &[Row] {
        &self.runs[p.index()]
    }

    fn saw_rss(&mut self, mb: f64) {
        self.rss_load_mb = Some(self.rss_load_mb.unwrap_or(0.0).max(mb));
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

/// Load runs of one `bench l7` (for the time estimate): per role, run and
/// protocol a closed loop, an open loop at `--load` and one at `--rate`
/// for each of the two proxies; the direct path's two loops per protocol.
fn load_runs(roles: usize, runs: usize) -> usize {
    roles * runs * PROTOS.len() * 3 * 2 + PROTOS.len() * 2
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
    anyhow::ensure!(
        (1..=20).contains(&opts.runs),
        "--runs {}: between 1 and 20",
        opts.runs
    );
    anyhow::ensure!(opts.rate > 0, "--rate {}: above 0", opts.rate);
    let roles = Role::selected(&std::env::var("MESH_BENCH_ONLY").unwrap_or_default())?;
    let envoy =
        mesh_e2e::envoy::envoy_bin().map_err(|e| anyhow::anyhow!("bench l7 needs Envoy: {e}"))?;
    let programs = programs(envoy)?;
    let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let cpus = Cpus::for_machine(ncpu);
    let loads = load_runs(roles.len(), opts.runs);
    step(format!(
        "{loads} load runs of {} s (about {:.0} min); proxies on CPU {}, upstream on {}, loadgen on {}",
        opts.duration,
        loads as f64 * (opts.duration + 0.5) / 60.0,
        cpus.proxy,
        cpus.upstream,
        cpus.loadgen
    ));
    let bed = Bed::new(&programs, cpus)?;

    let mut direct = Measured::new("direct (no proxy)");
    let mut direct_rows = [Row::default(), Row::default()];
    for p in PROTOS {
        step(format!("direct, {}: closed loop", p.label()));
        let r = load(&bed, &programs, &opts, bed.upstream_addr(), HOST, p, None)?;
        direct_rows[p.index()] = closed_row(&r, None);
    }
    let mut pairs = vec![];
    for role in roles {
        pairs.push(measure_pair(&bed, &programs, &opts, role)?);
    }
    // The direct path at the first pair's first offered load, for reference.
    for p in PROTOS {
        let row = &mut direct_rows[p.index()];
        row.offered = pairs[0].envoy.rows(p)[0].offered;
        step(format!(
            "direct, {}: open loop at {:.0} rps",
            p.label(),
            row.offered
        ));
        let addr = bed.upstream_addr();
        let r = load(&bed, &programs, &opts, addr, HOST, p, Some(row.offered))?;
        open_row(row, &r);
    }
    for (runs, row) in direct.runs.iter_mut().zip(direct_rows) {
        runs.push(row);
    }

    report::print(&opts, &direct, &pairs);
    Ok(())
}

/// The first proxy of a pair.
enum Baseline {
    Envoy(mesh_e2e::envoy::Envoy),
    /// `MESH_BENCH_L7_BASELINE`: another mesh-waypoint build.
    Mesh(mesh_e2e::waypoint::MeshWaypoint),
}

impl Baseline {
    fn pid(&self) -> u32 {
        match self {
            Baseline::Envoy(e) => e.pid(),
            Baseline::Mesh(m) => m.pid(),
        }
    }
}

/// A running proxy of a pair: its pid, where it listens, its figures.
struct Running<'a> {
    pid: u32,
    addr: std::net::SocketAddr,
    measured: &'a mut Measured,
}

/// Envoy and mesh-waypoint in `role`, both running, every measurement
/// alternating between them (see the module documentation).
fn measure_pair(bed: &Bed, programs: &Programs, opts: &L7Args, role: Role) -> anyhow::Result<Pair> {
    let (envoy_name, ours_name) = match (role, &programs.baseline) {
        (Role::Waypoint, None) => ("Envoy --concurrency 1", "mesh-waypoint --worker-threads 1"),
        (Role::Ingress, None) => ("Envoy gateway, 1 worker", "mesh-waypoint --role gateway"),
        (Role::Waypoint, Some(_)) => ("baseline mesh-waypoint", "mesh-waypoint --worker-threads 1"),
        (Role::Ingress, Some(_)) => (
            "baseline mesh-waypoint gateway",
            "mesh-waypoint --role gateway",
        ),
    };
    let mut envoy = Measured::new(envoy_name);
    let mut ours = Measured::new(ours_name);
    let host = role.host();

    step(format!(
        "starting {envoy_name} and {ours_name} ({})",
        role.label()
    ));
    // In Envoy's pod: Envoy, or the baseline build of an A/B.
    let (e, e_addr) = match (role, &programs.baseline) {
        (Role::Waypoint, None) => (
            Baseline::Envoy(bed.start_envoy(&programs.envoy)?),
            bed.proxy_addr("envoy"),
        ),
        (Role::Ingress, None) => (
            Baseline::Envoy(bed.start_envoy_gateway(&programs.envoy)?),
            bed.gateway_addr(GW_ENVOY),
        ),
        (Role::Waypoint, Some(bin)) => (
            Baseline::Mesh(bed.start_waypoint_in(bin, "envoy", "waypoint-envoy")?),
            bed.proxy_addr("envoy"),
        ),
        (Role::Ingress, Some(bin)) => (
            Baseline::Mesh(bed.start_mesh_gateway_in(bin, GW_ENVOY)?),
            bed.gateway_addr(GW_ENVOY),
        ),
    };
    let (w, w_addr) = match role {
        Role::Waypoint => (
            bed.start_waypoint(&programs.waypoint)?,
            bed.proxy_addr("waypoint"),
        ),
        Role::Ingress => (
            bed.start_mesh_gateway(&programs.waypoint)?,
            bed.gateway_addr(GW_MESH),
        ),
    };
    envoy.rss_idle_mb = Some(rss_mb(e.pid())?);
    ours.rss_idle_mb = Some(rss_mb(w.pid())?);
    let mut both = [
        Running {
            pid: e.pid(),
            addr: e_addr,
            measured: &mut envoy,
        },
        Running {
            pid: w.pid(),
            addr: w_addr,
            measured: &mut ours,
        },
    ];
    for run in 0..opts.runs {
        // Envoy first in odd runs (1-based), mesh-waypoint first in even ones.
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for p in PROTOS {
            let tag = |who: &Running, what: &str| {
                format!(
                    "run {}/{}, {} ({}), {}: {what}",
                    run + 1,
                    opts.runs,
                    who.measured.name,
                    role.label(),
                    p.label()
                )
            };
            let mut rows = [Row::default(), Row::default()];
            for i in order {
                let who = &mut both[i];
                step(tag(who, "closed loop"));
                let (r, cpu, rss) = under_load(who.pid, || {
                    load(bed, programs, opts, who.addr, host, p, None)
                })?;
                rows[i] = closed_row(&r, Some(cpu));
                who.measured.saw_rss(rss);
            }
            let offered = (rows[0].max_rps * opts.load).max(1.0);
            for i in order {
                let who = &mut both[i];
                step(tag(who, &format!("open loop at {offered:.0} rps")));
                let r = load(bed, programs, opts, who.addr, host, p, Some(offered))?;
                rows[i].offered = offered;
                open_row(&mut rows[i], &r);
            }
            let rate = f64::from(opts.rate);
            for i in order {
                let who = &mut both[i];
                step(tag(who, &format!("open loop at the fixed {rate:.0} rps")));
                let (r, cpu, rss) = under_load(who.pid, || {
                    load(bed, programs, opts, who.addr, host, p, Some(rate))
                })?;
                rows[i].fixed = Some(fixed(&r, cpu, rss));
                rows[i].errors += failed(&r);
                who.measured.saw_rss(rss);
            }
            for (who, row) in both.iter_mut().zip(rows) {
                who.measured.runs[p.index()].push(row);
            }
        }
    }
    // Both proxies stop here.
    drop(w);
    drop(e);
    Ok(Pair { role, envoy, ours })
}

/// The release binaries `cargo xtask bench` built beside `mesh-lab`, and Envoy.
/// `MESH_BENCH_L7_BASELINE=<mesh-waypoint binary>` puts that build in
/// Envoy's place: an interleaved A/B of two builds.
fn programs(envoy: std::path::PathBuf) -> anyhow::Result<Programs> {
    // Only what bench l7 runs (no agent): checked here, not as the whole set.
    let dir = crate::bin_dir()?;
    let [control, podhttp, loadgen, waypoint] =
        ["mesh-control", "podhttp", "loadgen", "mesh-waypoint"].map(|b| dir.join(b));
    for bin in [&control, &podhttp, &loadgen, &waypoint] {
        anyhow::ensure!(
            bin.is_file(),
            "{} is missing: run `cargo xtask bench l7` (or `cargo build --release`)",
            bin.display()
        );
    }
    let baseline = std::env::var_os("MESH_BENCH_L7_BASELINE")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    if let Some(b) = &baseline {
        anyhow::ensure!(
            b.is_file(),
            "MESH_BENCH_L7_BASELINE={}: no such file",
            b.display()
        );
    }
    Ok(Programs {
        control,
        podhttp,
        loadgen,
        envoy,
        waypoint,
        baseline,
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

/// Transport errors and unsent requests of an open loop.
fn failed(v: &Value) -> u64 {
    v["errors"].as_u64().unwrap_or(0) + v["unsent"].as_u64().unwrap_or(0)
}

fn open_row(row: &mut Row, v: &Value) {
    row.p50_us = v["p50_us"].as_f64().unwrap_or(f64::NAN);
    row.p99_us = v["p99_us"].as_f64().unwrap_or(f64::NAN);
    row.errors += failed(v);
}

/// The fixed-rate figures: the proxy's CPU-seconds per second of the run.
fn fixed(v: &Value, cpu_seconds: f64, rss_mb: f64) -> Fixed {
    let elapsed = v["elapsed_s"].as_f64().filter(|s| *s > 0.0);
    Fixed {
        rps: v["rps"].as_f64().unwrap_or(0.0),
        vcpu: elapsed.map_or(f64::NAN, |s| cpu_seconds / s),
        p99_us: v["p99_us"].as_f64().unwrap_or(f64::NAN),
        rss_mb,
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
    fn fixed_rate_is_vcpu_per_thousand_rps() {
        let v = json!({"rps": 5000.0, "elapsed_s": 10.0, "p99_us": 800});
        let f = fixed(&v, 2.0, 14.5);
        assert_eq!(f.vcpu, 0.2);
        assert!((f.vcpu_per_krps() - 0.04).abs() < 1e-12, "{f:?}");
        assert_eq!((f.p99_us, f.rss_mb), (800.0, 14.5));
        assert!(fixed(&json!({"rps": 5000.0}), 2.0, 1.0).vcpu.is_nan());
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
    fn load_runs_at_the_defaults() {
        // Two roles, three runs: 72 proxy runs and the direct path's 4.
        assert_eq!(load_runs(2, 3), 76);
        assert_eq!(load_runs(1, 1), 16);
    }
}
