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
//! xtask itself depends on no workspace crate but `xtask-cli` (the options
//! and console helpers it shares with `mesh-lab`, which need nothing
//! set-up installs), so it compiles before set-up has installed anything;
//! the demo and the benchmarks are the `mesh-lab` binary (`xtask/lab`),
//! built by set-up's release build and then run in xtask's place
//! ([`lab`]).
mod cargo;
mod fuzz;
mod lab;
mod setup;
mod test;
mod test_summary;

use clap::{Parser, Subcommand};
use xtask::pins;
use xtask_cli::lab_args;

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
    Demo(lab_args::DemoArgs),
    /// Benchmarks; print ratios against a baseline measured in the same run. Needs root.
    Bench {
        #[command(subcommand)]
        which: lab_args::BenchArgs,
    },
    /// Soak the demo mesh: mixed L4/L7 load, config churn and daemon restarts for --minutes,
    /// printing requests, failures, RSS and fds over time and a verdict. Needs root.
    Soak(lab_args::SoakArgs),
    /// Run each fuzz target (fuzz/, cargo-fuzz on nightly; installs cargo-fuzz when missing) for
    /// --minutes and print executions and coverage per target; fails on a crash.
    Fuzz {
        /// Minutes per target.
        #[arg(long, default_value_t = 1.0)]
        minutes: f64,
        /// Only this target (a name in fuzz/fuzz_targets/).
        #[arg(long)]
        target: Option<String>,
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
        Cmd::Demo(args) => lab::demo(args),
        Cmd::Bench { which } => lab::bench(&which),
        Cmd::Soak(args) => lab::soak(&args),
        Cmd::Fuzz { minutes, target } => fuzz::run(minutes, target.as_deref()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub use xtask_cli::console::{require_root, step};

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Cmd};
    use crate::lab_args::ToFlags as _;

    /// What xtask hands to mesh-lab parses back to what the user typed.
    #[test]
    fn lab_flags_round_trip() {
        for line in [
            "cargo-xtask demo --duration 60 --config /tmp/x --l4",
            "cargo-xtask demo",
            "cargo-xtask bench l4 --bytes 1000 --repeats 1 --rounds 10",
            "cargo-xtask bench l7 --duration 2.5 --load 0.5 --h2-streams 8",
            "cargo-xtask soak --minutes 3 --restart-every 20",
        ] {
            let cli = Cli::try_parse_from(line.split(' ')).unwrap();
            let (sub, flags) = match &cli.cmd {
                Cmd::Demo(a) => ("demo", a.to_flags()),
                Cmd::Bench { which } => ("bench", which.to_flags()),
                Cmd::Soak(a) => ("soak", a.to_flags()),
                _ => unreachable!(),
            };
            let again = Cli::try_parse_from(
                ["cargo-xtask", sub]
                    .into_iter()
                    .map(String::from)
                    .chain(flags),
            )
            .unwrap();
            match (&cli.cmd, &again.cmd) {
                (Cmd::Demo(a), Cmd::Demo(b)) => assert_eq!(a, b, "{line}"),
                (Cmd::Bench { which: a }, Cmd::Bench { which: b }) => assert_eq!(a, b, "{line}"),
                (Cmd::Soak(a), Cmd::Soak(b)) => assert_eq!(a, b, "{line}"),
                _ => panic!("{line}: parsed as another command"),
            }
        }
    }
}
