//! `cargo xtask demo`: a node with three pods on this host — `productpage`
//! and `reviews` enrolled in the mesh, `legacy` not — with traffic flowing
//! and a live summary of what the agent carried.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use mesh_e2e::Topology;

use crate::{cargo, setup, step};

const PORT: u16 = 9080;

pub fn run(duration: Option<u64>) -> anyhow::Result<()> {
    crate::require_root("cargo xtask demo")?;
    let env = setup::ensure_all()?;
    cargo::build(&env, true)?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    step("creating the node and pods (network namespaces, bridge, cgroup leaves)");
    let mut topo = Topology::new(
        "mdemo",
        cargo::binaries(true),
        &["productpage", "reviews", "legacy"],
    )?;
    step("starting mesh-agent in the node namespace (loads and pins the eBPF)");
    topo.start_agent()?;
    topo.serve("reviews", PORT, None)?;
    topo.agent().enroll(topo.pod("productpage"), &[])?;
    topo.agent().enroll(topo.pod("reviews"), &[])?;

    let pins = topo.pin_dir();
    println!();
    println!(
        "  pods: productpage {} (enrolled), reviews {} (enrolled), legacy {} (not enrolled)",
        topo.pod("productpage").ip,
        topo.pod("reviews").ip,
        topo.pod("legacy").ip
    );
    println!("  inspect while it runs:");
    println!("    bpftool prog show name mesh_connect4        # and mesh_connect6, mesh_sockops");
    println!("    bpftool map show | grep -A1 -E 'enrolled_netns|orig_dst'");
    println!(
        "    bpftool map dump pinned {}/maps/enrolled_netns",
        pins.display()
    );
    println!("    bpftool cgroup show {}", topo.cgroup_root().display());
    println!(
        "    {} --instance {} status",
        topo.bins.agent.display(),
        topo.prefix
    );
    println!(
        "  agent log: {}",
        mesh_e2e::agent::log_path(&topo.prefix).display()
    );
    println!(
        "  stop with Ctrl-C{}",
        duration
            .map(|d| format!(" (or wait {d} s)"))
            .unwrap_or_default()
    );
    println!();

    let started = Instant::now();
    let dst = topo.pod("reviews").addr(PORT).to_string();
    while !stop.load(Ordering::SeqCst)
        && duration.is_none_or(|d| started.elapsed() < Duration::from_secs(d))
    {
        // productpage → reviews goes through the agent; legacy → reviews goes direct.
        let meshed = topo.client("productpage", &["echo", "--to", &dst, "--bytes", "262144"]);
        let direct = topo.client("legacy", &["echo", "--to", &dst, "--bytes", "65536"]);
        let conns = topo.agent().connections()?;
        let capture = topo.agent().capture()?;
        let totals = &conns["totals"];
        let last = conns["recent"]
            .as_array()
            .and_then(|r| r.last())
            .cloned()
            .unwrap_or_default();
        println!(
            "[{:>4}s] agent: {} connections ({} active), {} B out / {} B back | kernel: redirected {}, orig-dst recorded {} | last: {} -> {} | legacy direct: {}",
            started.elapsed().as_secs(),
            totals["accepted"], totals["active"], totals["bytes_sent"], totals["bytes_received"],
            capture["kernel_counters"]["redirected"], capture["kernel_counters"]["orig_dst_recorded"],
            last["source"].as_str().unwrap_or("-"), last["original_destination"].as_str().unwrap_or("-"),
            if direct.is_ok() { "ok" } else { "FAILED" },
        );
        if let Err(e) = meshed {
            println!("         productpage -> reviews failed: {e:#}");
        }
        for _ in 0..10 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    step("tearing down (agent, pods, namespaces, cgroups, pins)");
    drop(topo);
    step("done: nothing left behind");
    Ok(())
}
