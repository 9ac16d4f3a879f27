//! The demo mesh and the benchmarks behind `cargo xtask demo|bench`, on the
//! end-to-end harness (`mesh-e2e`): real network namespaces, real eBPF, the
//! release binaries built beside `mesh-lab`.
//!
//! - [`demo_bookinfo`]: bookinfo behind a waypoint, with the commands a
//!   person can try ([`demo_guide`]) and `--config` overrides
//!   ([`demo_config`]), its service graph page ([`demo_dashboard`]),
//!   ingress through a gateway ([`demo_ingress`]) and egress to a
//!   ServiceEntry host ([`demo_egress`]), and a Prometheus
//!   scraping all of it ([`demo_prometheus`]);
//! - [`demo_l4`]: L4 authorization, in the agents and in the kernel;
//! - [`bench`] (`l4`, cross node in [`bench_l4_cross`]), [`bench_policy`], [`bench_l7`] with its topology
//!   and its ingress path ([`bench_l7_ingress`]);
//! - [`soak`]: the demo mesh under load, churn and restarts, judged by
//!   [`soak_report`].
pub mod bench;
pub mod bench_l4_cross;
pub mod bench_l4_proc;
pub mod bench_l4_report;
pub mod bench_l7;
pub mod bench_l7_ingress;
pub mod bench_l7_topology;
pub mod bench_policy;
pub mod bench_same_node;
pub mod bench_scale;
pub mod demo_bookinfo;
pub mod demo_config;
pub mod demo_dashboard;
pub mod demo_egress;
pub mod demo_guide;
pub mod demo_ingress;
pub mod demo_l4;
pub mod demo_prometheus;
pub mod soak;
pub mod soak_report;

use std::path::PathBuf;

/// The demo's and benchmarks' options, as `cargo xtask` parses them, and
/// the console helpers: shared with xtask through `xtask-cli`.
pub use xtask_cli::{
    console::{require_root, step},
    lab_args,
};

/// The directory of the binaries `cargo build` put beside `mesh-lab`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no directory", exe.display()))?
        .to_path_buf())
}

/// The mesh's binaries beside `mesh-lab`, each checked to exist.
pub fn binaries() -> anyhow::Result<mesh_e2e::Binaries> {
    binaries_in(&bin_dir()?)
}

/// The mesh's binaries in `dir` (a cargo profile directory), each checked
/// to exist.
pub fn binaries_in(dir: &std::path::Path) -> anyhow::Result<mesh_e2e::Binaries> {
    let bins = mesh_e2e::Binaries {
        agent: dir.join("mesh-agent"),
        podctl: dir.join("podctl"),
        control: dir.join("mesh-control"),
        waypoint: dir.join("mesh-waypoint"),
        podhttp: dir.join("podhttp"),
    };
    for bin in [
        &bins.agent,
        &bins.podctl,
        &bins.control,
        &bins.waypoint,
        &bins.podhttp,
    ] {
        anyhow::ensure!(
            bin.is_file(),
            "{} is missing: run `cargo xtask demo` (or `cargo build --release`) so the whole workspace is built",
            bin.display()
        );
    }
    Ok(bins)
}
