//! `cargo xtask bench l4`: pod→pod through the mesh against the same pods
//! talking directly, measured in the same run on the same topology.
//!
//! Same node — direct, the kernel fast path and through the agent:
//! [`crate::bench_same_node`]. Cross node, against ztunnel too with
//! `--ztunnel PATH`: [`crate::bench_l4_cross`]. Policy cost:
//! [`crate::bench_policy`]. Throughput is one TCP stream uploading
//! `--bytes` to a sink; latency 1-byte request/response on one connection,
//! `--rounds` round trips, p50/p99; agent CPU seconds (utime+stime from
//! /proc) and peak RSS (VmHWM).
use serde_json::Value;

use crate::lab_args::BenchArgs;

pub fn run(which: BenchArgs) -> anyhow::Result<()> {
    let (bytes, repeats, rounds, ztunnel, rate) = match which {
        BenchArgs::L4 {
            bytes,
            repeats,
            rounds,
            ztunnel,
            rate,
        } => (bytes, repeats, rounds, ztunnel, rate),
        BenchArgs::L7(opts) => return crate::bench_l7::run(opts),
        BenchArgs::Scale(opts) => return crate::bench_scale::run(&opts),
    };
    crate::require_root("cargo xtask bench")?;
    anyhow::ensure!(repeats > 0, "--repeats must be at least 1");
    if let Some(z) = &ztunnel {
        anyhow::ensure!(z.is_file(), "--ztunnel {}: not a file", z.display());
    }
    // MESH_BENCH_ONLY=same|cross|policy runs one part (for iterating on one path).
    let only = std::env::var("MESH_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "same" {
        crate::bench_same_node::run(bytes, repeats, rounds)?;
    }
    if only != "same" && only != "policy" {
        crate::bench_l4_cross::run(&crate::bench_l4_cross::CrossOpts {
            bytes,
            repeats,
            rounds,
            rate,
            ztunnel,
        })?;
    }
    if only.is_empty() || only == "policy" {
        crate::bench_policy::run(bytes, repeats, rounds)?;
    }
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
