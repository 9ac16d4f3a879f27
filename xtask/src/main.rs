//! `cargo xtask`: the project's commands. Each one first installs whatever
//! is missing on a fresh machine (see `setup.rs`), with progress.
//!
//! - `cargo xtask setup` — only install prerequisites
//! - `cargo xtask build [--release]` — the whole workspace: eBPF + agent,
//!   control plane, waypoint, CLI, CNI plugin, test workloads, `mesh-lab`
//! - `cargo xtask test` — lint and the whole test suite (needs root)
//! - `cargo xtask demo [--duration S] [--config DIR] [--l4]` — a local
//!   bookinfo-like mesh behind a waypoint with a live summary (root); `--l4`
//!   runs the L4 authorization demo instead
//! - `cargo xtask bench l4|l7 [options]` — benchmarks against a baseline
//!   measured in the same run (root)
//!
//! xtask itself depends on no workspace crate, so it compiles before
//! set-up has installed anything; the demo and the benchmarks are the
//! `mesh-lab` binary (`xtask/lab`), built by set-up's release build and
//! then run in xtask's place ([`lab`]).
mod cargo;
mod lab;
mod pins;
mod setup;
mod test;
mod test_summary;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, demo, test and benchmark the mesh; every command installs what is missing first"
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
    /// Build the whole workspace: the agent (with its eBPF), control plane, waypoint, meshctl,
    /// CNI plugin, test workloads and mesh-lab. `--release` is exactly `cargo build --release`.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run formatting and clippy checks, then every test (unit and end-to-end), every test
    /// binary even when one fails, ending with one summary naming each failing test. Needs root.
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
        /// (xtask/lab/demo/bookinfo/): a resource replaces the default of the
        /// same kind, namespace and name; the demo lists what it replaced.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// The L4 demo instead: AuthorizationPolicy enforced by the agents
        /// and in the kernel, no waypoint.
        #[arg(long)]
        l4: bool,
    },
    /// Benchmarks (`l4`, `l7`); print ratios against a baseline measured in the same run.
    /// Options follow the benchmark's name: `cargo xtask bench l7 --help`. Needs root.
    Bench {
        /// `l4` or `l7`, then that benchmark's options.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "BENCH [OPTIONS]"
        )]
        args: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup => {
            step("cargo xtask setup: installing what the build and the tests need");
            setup::ensure_all().map(drop)
        }
        Cmd::Build { release } => {
            step("cargo xtask build: installing prerequisites, then building the workspace");
            setup::ensure_all().and_then(|env| cargo::build(&env, release))
        }
        Cmd::Test {
            no_lint,
            cargo_args,
        } => test::run(!no_lint, &cargo_args),
        Cmd::Demo {
            duration,
            config,
            l4,
        } => lab::demo(duration, config.as_deref(), l4),
        Cmd::Bench { args } => lab::bench(&args),
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
