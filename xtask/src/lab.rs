//! `cargo xtask demo|bench|soak`: set-up, the release build, then the
//! `mesh-lab` binary (`xtask/lab`) in xtask's place.
//!
//! The release build is exactly `cargo build --release` (every default
//! member, the same feature set), so after a user's own
//! `cargo build --release` the demo compiles nothing, and the other way
//! round. `mesh-lab` replaces this process (`exec`), so no xtask process
//! waits in between: the demo handles Ctrl-C itself and tears its mesh
//! down.
use std::{os::unix::process::CommandExt as _, process::Command};

use anyhow::Context as _;

use crate::{
    cargo,
    lab_args::{BenchArgs, DemoArgs, SoakArgs, ToFlags as _},
    setup, step,
};

pub fn demo(mut args: DemoArgs) -> anyhow::Result<()> {
    crate::require_root("cargo xtask demo")?;
    if let Some(dir) = &args.config {
        anyhow::ensure!(
            dir.is_dir(),
            "--config {}: not a directory of Istio YAML",
            dir.display()
        );
        // mesh-lab runs from the workspace root.
        args.config = Some(
            std::fs::canonicalize(dir).with_context(|| format!("--config {}", dir.display()))?,
        );
    }
    step("cargo xtask demo: installing prerequisites, building (release), then starting the demo mesh");
    let mut all = vec!["demo".to_string()];
    all.extend(args.to_flags());
    run(&all)
}

pub fn bench(which: &BenchArgs) -> anyhow::Result<()> {
    crate::require_root("cargo xtask bench")?;
    step("cargo xtask bench: installing prerequisites, building (release), then measuring");
    let mut all = vec!["bench".to_string()];
    all.extend(which.to_flags());
    run(&all)
}

pub fn soak(args: &SoakArgs) -> anyhow::Result<()> {
    crate::require_root("cargo xtask soak")?;
    step("cargo xtask soak: installing prerequisites, building (release), then soaking the demo mesh");
    let mut all = vec!["soak".to_string()];
    all.extend(args.to_flags());
    run(&all)
}

/// Set-up, `cargo build --release`, then `exec mesh-lab <args>`.
fn run(args: &[String]) -> anyhow::Result<()> {
    let env = setup::ensure_all()?;
    cargo::build(&env, true)?;
    let lab = cargo::target_dir(true).join("mesh-lab");
    let err = Command::new(&lab)
        .args(args)
        .current_dir(cargo::workspace_root())
        .exec();
    Err(err).with_context(|| format!("cannot run {}", lab.display()))
}
