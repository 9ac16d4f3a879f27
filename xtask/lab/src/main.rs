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
    Demo(mesh_lab::lab_args::DemoArgs),
    /// Benchmarks; print ratios against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: mesh_lab::lab_args::BenchArgs,
    },
    /// The demo mesh under load, churn and restarts; a verdict at the end.
    Soak(mesh_lab::lab_args::SoakArgs),
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Demo(args) if args.l4 => mesh_lab::demo_l4::run(args.duration),
        Cmd::Demo(args) => mesh_lab::demo_bookinfo::run(args.duration, args.config.as_deref()),
        Cmd::Bench { which } => mesh_lab::bench::run(which),
        Cmd::Soak(args) => mesh_lab::soak::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-lab: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
