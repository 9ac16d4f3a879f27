//! `cargo xtask bench l4`, same node: pod `meshed` (enrolled, a mesh
//! workload) and pod `direct` (not enrolled) talk to pod `server` on one
//! node with a control plane, three ways interleaved in every repeat:
//! - **direct**: `direct` → `server`, no mesh;
//! - **fast path**: `meshed` → `server` once the agent has authorized the
//!   pair (one warm-up connection per port): the kernel connects the pods
//!   directly and the agent only accounts (ARCHITECTURE.md, decision 13);
//! - **through the agent**: the same with `--fast-path=false`: every
//!   connection is accepted, authorized and relayed by the agent.
//!
//! The agent is restarted between the two mesh modes; pods run on CPU 0
//! and the agent on CPU 1 (as `bench_policy.rs`, for stable figures).
//! Each figure is the median over the repeats; the spread (min–max as a
//! percentage of the median) of each ratio is printed.
use mesh_e2e::cluster::Cluster;
use serde_json::Value;

use crate::{
    bench::{cpu_seconds, gbit, median, status_kib, verdict},
    bench_l4_proc::{can_pin, pin_threads, PodsPinned, PODS_CPU, PROXY_CPU as AGENT_CPU},
    step,
};

const ECHO: u16 = 9080;
const SINK: u16 = 9090;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Direct,
    FastPath,
    Agent,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::FastPath => "fast path",
            Mode::Agent => "through the agent",
        }
    }
}

#[derive(Clone, Copy)]
struct Figures {
    gbit: f64,
    p50_us: f64,
    p99_us: f64,
    setup_us: f64,
    agent_cpu_s: f64,
}

fn restart(c: &mut Cluster, args: &[&str], pin: bool) -> anyhow::Result<()> {
    c.stop_agent("node1");
    c.start_agent("node1", args)?;
    c.wait_ready("node1", 3, &["meshed", "server"])?;
    c.agent("node1").unenroll(c.pod("direct"))?;
    if pin {
        pin_threads(c.agent("node1").pid(), AGENT_CPU)?;
    }
    Ok(())
}

fn measure(c: &Cluster, mode: Mode, bytes: u64, rounds: u32) -> anyhow::Result<Figures> {
    let pod = if mode == Mode::Direct {
        "direct"
    } else {
        "meshed"
    };
    let sink = c.pod("server").addr(SINK).to_string();
    let echo = c.pod("server").addr(ECHO).to_string();
    if mode != Mode::Direct {
        // The first connection of each pair goes through the agent, which
        // authorizes it (and, with the fast path on, caches the pair).
        c.client(pod, &["stream", "--to", &sink, "--bytes", "4096"])?;
        c.client(pod, &["rr", "--to", &echo, "--count", "10"])?;
    }
    let pid = c.agent("node1").pid();
    // Cumulative over agent restarts (the counters live in pinned maps).
    let fast0 = c.agent("node1").kernel_counter("fast_path")?;
    let cpu0 = cpu_seconds(pid)?;
    let stream = c.client(
        pod,
        &["stream", "--to", &sink, "--bytes", &bytes.to_string()],
    )?;
    let rr = c.client(pod, &["rr", "--to", &echo, "--count", &rounds.to_string()])?;
    let setup = c.client(pod, &["conn-rr", "--to", &echo, "--count", "500"])?;
    let agent_cpu_s = cpu_seconds(pid)? - cpu0;
    let us = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    let fast = c.agent("node1").kernel_counter("fast_path")? - fast0;
    match mode {
        Mode::FastPath => anyhow::ensure!(
            fast >= 500,
            "the fast path carried {fast} of the measured connections, expected all of them"
        ),
        Mode::Agent => anyhow::ensure!(fast == 0, "the fast path was used with it off"),
        Mode::Direct => {}
    }
    Ok(Figures {
        gbit: gbit(&stream)?,
        p50_us: us(&rr, "p50_ns"),
        p99_us: us(&rr, "p99_ns"),
        setup_us: us(&setup, "p50_ns"),
        agent_cpu_s,
    })
}

/// Median and spread (min–max as % of the median) of `values`.
fn stat(mut values: Vec<f64>) -> (f64, f64) {
    let med = median(&mut values);
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (med, (hi - lo) / med.abs() * 100.0)
}

pub fn run(bytes: u64, repeats: u32, rounds: u32) -> anyhow::Result<()> {
    step("same node: pods `meshed` (mesh), `direct` (not enrolled), `server`; direct, fast path, through the agent");
    let two_cpus = can_pin();
    // Pods started from here on run on PODS_CPU; undone when the bench ends.
    let _pinned = two_cpus.then(PodsPinned::new).transpose()?;
    let mut c = Cluster::new(
        "mbench",
        crate::binaries()?,
        &[("node1", &["meshed", "direct", "server"])],
    )?;
    c.start_control(&[])?;
    c.start_agent("node1", &[])?;
    c.serve("server", ECHO, Some(SINK))?;
    let mut runs: Vec<(Mode, Figures)> = vec![];
    let mut rss_kib = (0, 0);
    for i in 1..=repeats {
        for (mode, flags) in [
            (Mode::Direct, &[][..]),
            (Mode::FastPath, &[][..]),
            (Mode::Agent, &["--fast-path=false"][..]),
        ] {
            step(format!("run {i}/{repeats}: {}", mode.name()));
            if mode != Mode::Direct {
                restart(&mut c, flags, two_cpus)?;
            } else if i == 1 {
                restart(&mut c, &[], two_cpus)?;
            }
            let f = measure(&c, mode, bytes, rounds)?;
            println!(
                "    {}: {:.2} Gbit/s, RR p50 {:.1} us p99 {:.1} us, connect+RT p50 {:.1} us, agent {:.2} CPU-s",
                mode.name(),
                f.gbit,
                f.p50_us,
                f.p99_us,
                f.setup_us,
                f.agent_cpu_s
            );
            let pid = c.agent("node1").pid();
            let hwm = status_kib(pid, "VmHWM")?;
            match mode {
                Mode::FastPath => rss_kib.0 = rss_kib.0.max(hwm),
                Mode::Agent => rss_kib.1 = rss_kib.1.max(hwm),
                Mode::Direct => {}
            }
            runs.push((mode, f));
        }
    }
    let of = |m: Mode| -> Vec<Figures> {
        runs.iter()
            .filter(|(mode, _)| *mode == m)
            .map(|(_, f)| *f)
            .collect()
    };
    let (direct, fast, agent) = (of(Mode::Direct), of(Mode::FastPath), of(Mode::Agent));
    // Per repeat, each mesh run against the direct run of that repeat.
    let per = |mesh: &[Figures], f: fn(&Figures) -> f64, cmp: fn(f64, f64) -> f64| {
        mesh.iter()
            .zip(&direct)
            .map(|(m, d)| cmp(f(m), f(d)))
            .collect::<Vec<_>>()
    };
    let div = |m: f64, d: f64| m / d;
    let sub = |m: f64, d: f64| m - d;
    let of_direct = |f: fn(&Figures) -> f64| stat(direct.iter().map(f).collect()).0;
    let (d_gbit, d50, d99, dsetup) = (
        of_direct(|f| f.gbit),
        of_direct(|f| f.p50_us),
        of_direct(|f| f.p99_us),
        of_direct(|f| f.setup_us),
    );
    println!();
    println!("bench l4, same node (pods on CPU {PODS_CPU}, agent on CPU {AGENT_CPU}; median of {repeats}, spread = min-max of the per-repeat ratio)");
    println!("  direct: {d_gbit:.2} Gbit/s, RR p50 {d50:.1} us p99 {d99:.1} us, connect+RT p50 {dsetup:.1} us");
    for (name, mesh, rss) in [
        ("fast path        ", &fast, rss_kib.0),
        ("through the agent", &agent, rss_kib.1),
    ] {
        let (tp, tp_spread) = stat(per(mesh, |f| f.gbit, div));
        let (p50, _) = stat(per(mesh, |f| f.p50_us, sub));
        let (p99, p99_spread) = stat(per(mesh, |f| f.p99_us, div));
        let (setup, _) = stat(mesh.iter().map(|f| f.setup_us).collect());
        let (cpu, _) = stat(mesh.iter().map(|f| f.agent_cpu_s).collect());
        println!(
            "  {name}: throughput {tp:.2}x direct (±{:.0} %)  target >= 0.90x {}   RR p50 {p50:+.1} us  target <= +5 us {}   p99 {p99:.2}x (±{:.0} %)   connect+RT p50 {setup:.1} us   agent {cpu:.2} CPU-s per repeat, peak RSS {:.1} MB",
            tp_spread / 2.0,
            verdict(tp >= 0.9),
            verdict(p50 <= 5.0),
            p99_spread / 2.0,
            rss as f64 / 1024.0
        );
    }
    Ok(())
}
