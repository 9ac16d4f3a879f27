//! `mesh-lab`: the demo mesh and the benchmarks, run by `cargo xtask
//! demo|bench` after set-up and the release build (it needs the Debian
//! tools, the eBPF toolchain and, for `bench l7`, Envoy that set-up
//! installs). Runs the binaries built beside it (`target/release/`).
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mesh-lab",
    about = "The demo mesh and the benchmarks (started by `cargo xtask demo|bench`, which install \
             prerequisites and build first). Needs root."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A local demo mesh in network namespaces until Ctrl-C or --duration.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// A directory of Istio YAML applied over the demo's defaults: a
        /// resource replaces the default of the same kind, namespace and name.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// The L4 authorization demo instead (no waypoint).
        #[arg(long)]
        l4: bool,
    },
    /// Benchmarks; print ratios against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: mesh_lab::bench::Which,
    },
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Demo {
            duration, l4: true, ..
        } => mesh_lab::demo_l4::run(duration),
        Cmd::Demo {
            duration, config, ..
        } => mesh_lab::demo_bookinfo::run(duration, config.as_deref()),
        Cmd::Bench { which } => mesh_lab::bench::run(which),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-lab: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
