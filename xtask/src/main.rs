//! `cargo xtask`: the project's commands. Each one first installs whatever
//! is missing on a fresh machine (see `setup.rs`), with progress.
//!
//! - `cargo xtask setup` — only install prerequisites
//! - `cargo xtask build [--release]` — eBPF + agent + test workload
//! - `cargo xtask test` — lint and the whole test suite (needs root)
//! - `cargo xtask demo [--duration S] [--config DIR] [--l4]` — a local
//!   bookinfo-like mesh behind a waypoint with a live summary (root); `--l4`
//!   runs the L4 authorization demo instead
//! - `cargo xtask bench l4` — throughput/latency through the agent vs direct (root)
//! - `cargo xtask bench l7` — HTTP through mesh-waypoint vs Envoy vs direct (root)
mod bench;
mod bench_l7;
mod bench_l7_topology;
mod bench_policy;
mod cargo;
mod demo;
mod demo_bookinfo;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, demo, test and benchmark the mesh"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing prerequisites (Debian packages, nightly rust-src, bpf-linker, Envoy,
    /// kubernetes-validate).
    Setup,
    /// Build the agent (with its eBPF) and the test workload.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run formatting and clippy checks, then every test (unit and end-to-end). Needs root.
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Run a local demo mesh in network namespaces until Ctrl-C or --duration:
    /// bookinfo-like services behind a waypoint (VirtualService canary,
    /// DestinationRule subsets). Needs root.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// A directory of Istio YAML applied over the demo's defaults
        /// (xtask/demo/bookinfo/), e.g. the course notes' VirtualServices.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// The L4 demo instead: AuthorizationPolicy enforced by the agents
        /// and in the kernel, no waypoint.
        #[arg(long)]
        l4: bool,
    },
    /// Benchmarks; prints ratios against a baseline measured in the same run. Needs root.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Setup => setup::ensure_all().map(drop),
        Cmd::Build { release } => setup::ensure_all().and_then(|env| cargo::build(&env, release)),
        Cmd::Test {
            no_lint,
            cargo_args,
        } => test::run(!no_lint, &cargo_args),
        Cmd::Demo {
            duration, l4: true, ..
        } => demo::run(duration),
        Cmd::Demo {
            duration, config, ..
        } => demo_bookinfo::run(duration, config.as_deref()),
        Cmd::Bench { which } => bench::run(which),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints a progress line, flushed at once.
pub fn step(msg: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "\x1b[1m==>\x1b[0m {msg}");
    let _ = out.flush();
}

/// Fails clearly when not root.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root (network namespaces, cgroups, eBPF); run it as root"
    );
    Ok(())
}
