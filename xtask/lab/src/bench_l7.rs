//! `cargo xtask bench l7`: HTTP through the L7 waypoint against a stock
//! Envoy fed the same routes by the same control plane, and against no
//! proxy at all, in one run on one machine (see `bench_l7_topology.rs`).
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
    let envoy =
        mesh_e2e::envoy::envoy_bin().map_err(|e| anyhow::anyhow!("bench l7 needs Envoy: {e}"))?;
    let programs = programs(envoy)?;
    let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let cpus = Cpus::for_machine(ncpu);
    step(format!(
        "topology: client, envoy, waypoint, upstream pods; proxy on CPU {}, upstream on {}, loadgen on {}",
        cpus.proxy, cpus.upstream, cpus.loadgen
    ));
    let bed = Bed::new(&programs, cpus)?;

    let mut direct = Measured {
        name: "direct (no proxy)",
        ..Default::default()
    };
    let mut envoy_path = Measured {
        name: "Envoy --concurrency 1",
        ..Default::default()
    };
    let mut wp_path = Measured {
        name: "mesh-waypoint --worker-threads 1",
        ..Default::default()
    };

    for p in PROTOS {
        step(format!("direct, {}: closed loop", p.label()));
        let r = load(&bed, &programs, &opts, bed.upstream_addr(), p, None)?;
        *direct.row(p) = closed_row(&r, None);
    }

    step("starting Envoy");
    let e = bed.start_envoy(&programs.envoy)?;
    envoy_path.rss_idle_mb = Some(rss_mb(e.pid())?);
    let addr = bed.proxy_addr("envoy");
    let mut offered = [0.0; 2];
    for (i, p) in PROTOS.into_iter().enumerate() {
        step(format!("Envoy, {}: closed loop", p.label()));
        let (r, cpu, rss) = under_load(e.pid(), || load(&bed, &programs, &opts, addr, p, None))?;
        *envoy_path.row(p) = closed_row(&r, Some(cpu));
        envoy_path.rss_load_mb = Some(envoy_path.rss_load_mb.unwrap_or(0.0).max(rss));
        offered[i] = (envoy_path.row(p).max_rps * opts.load).max(1.0);
    }
    for (i, p) in PROTOS.into_iter().enumerate() {
        step(format!(
            "Envoy, {}: open loop at {:.0} rps",
            p.label(),
            offered[i]
        ));
        let r = load(&bed, &programs, &opts, addr, p, Some(offered[i]))?;
        open_row(envoy_path.row(p), &r);
    }
    drop(e);

    step("starting mesh-waypoint");
    let w = bed.start_waypoint(&programs.waypoint)?;
    wp_path.rss_idle_mb = Some(rss_mb(w.pid())?);
    let addr = bed.proxy_addr("waypoint");
    for p in PROTOS {
        step(format!("mesh-waypoint, {}: closed loop", p.label()));
        let (r, cpu, rss) = under_load(w.pid(), || load(&bed, &programs, &opts, addr, p, None))?;
        *wp_path.row(p) = closed_row(&r, Some(cpu));
        wp_path.rss_load_mb = Some(wp_path.rss_load_mb.unwrap_or(0.0).max(rss));
    }
    for (i, p) in PROTOS.into_iter().enumerate() {
        step(format!(
            "mesh-waypoint, {}: open loop at {:.0} rps",
            p.label(),
            offered[i]
        ));
        let r = load(&bed, &programs, &opts, addr, p, Some(offered[i]))?;
        open_row(wp_path.row(p), &r);
    }

    for (i, p) in PROTOS.into_iter().enumerate() {
        step(format!(
            "direct, {}: open loop at {:.0} rps",
            p.label(),
            offered[i]
        ));
        let r = load(
            &bed,
            &programs,
            &opts,
            bed.upstream_addr(),
            p,
            Some(offered[i]),
        )?;
        open_row(direct.row(p), &r);
    }

    print_table(&opts, &offered, &direct, &envoy_path, Some(&wp_path));
    Ok(())
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
    proto: Proto,
    rate: Option<f64>,
) -> anyhow::Result<Value> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &bed.cpus.loadgen])
        .arg(&programs.loadgen)
        .arg("--netns")
        .arg(bed.netns("client"))
        .args(["--url", &format!("http://{addr}/bench")])
        .args(["--header", &format!("host:{HOST}")])
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

fn print_table(
    opts: &L7Args,
    offered: &[f64; 2],
    direct: &Measured,
    envoy: &Measured,
    wp: Option<&Measured>,
) {
    println!();
    println!(
        "bench l7: {:.0} s per run; proxies with one worker pinned to one CPU; open loop at {:.0}% of Envoy's max",
        opts.duration,
        opts.load * 100.0
    );
    println!("  (failed = transport errors + open-loop requests still unsent at the end)");
    println!(
        "  {:<26} {:<9} {:>10} {:>12} {:>10} {:>9} {:>9} {:>7}   {:>8} {:>8}",
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
    let mut paths = vec![direct, envoy];
    paths.extend(wp);
    for path in paths {
        for (i, p) in PROTOS.into_iter().enumerate() {
            let r = match p {
                Proto::H1 => &path.h1,
                Proto::H2 => &path.h2,
            };
            println!(
                "  {:<26} {:<9} {:>10.0} {:>12} {:>10.0} {:>9.0} {:>9.0} {:>7}   {:>8} {:>8}",
                path.name,
                p.label(),
                r.max_rps,
                r.rps_per_cpu
                    .map_or_else(|| "-".into(), |x| format!("{x:.0}")),
                offered[i],
                r.p50_us,
                r.p99_us,
                r.errors,
                mb(path.rss_idle_mb),
                mb(path.rss_load_mb),
            );
        }
    }
    for p in PROTOS {
        let d = match p {
            Proto::H1 => &direct.h1,
            Proto::H2 => &direct.h2,
        };
        let e = match p {
            Proto::H1 => &envoy.h1,
            Proto::H2 => &envoy.h2,
        };
        if e.max_rps > 0.8 * d.max_rps {
            println!(
                "  note ({}): Envoy reached {:.0}% of the direct rate: the client side may be the limit, ratios understate the proxies' difference",
                p.label(),
                100.0 * e.max_rps / d.max_rps
            );
        }
    }
    let Some(wp) = wp else {
        println!("  mesh-waypoint / Envoy: not measured (no mesh-waypoint binary in this build)");
        return;
    };
    println!("  mesh-waypoint / Envoy:");
    for p in PROTOS {
        let (e, w) = match p {
            Proto::H1 => (&envoy.h1, &wp.h1),
            Proto::H2 => (&envoy.h2, &wp.h2),
        };
        let (rps_ratio, p99_ratio) = ratios(w, e);
        println!(
            "    {:<9} rps/core {rps_ratio:>5.2}x  target >= 1.50x {:<7}  p99 at the same load {p99_ratio:>5.2}x  target <= 0.70x {}",
            p.label(),
            verdict(rps_ratio >= 1.5),
            verdict(p99_ratio <= 0.7)
        );
    }
    let rss = wp.rss_load_mb.unwrap_or(f64::NAN);
    println!(
        "    RSS under load {rss:.1} MB (Envoy {}), target <= 25 MB {}",
        mb(envoy.rss_load_mb),
        verdict(rss <= 25.0)
    );
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
