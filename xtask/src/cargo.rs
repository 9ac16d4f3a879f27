//! Invoking cargo for the workspace.
use std::{path::PathBuf, process::Command};

use crate::{
    setup::{run_visible, Env},
    step,
};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// `cargo` in the workspace root, with the eBPF toolchain set-up chose.
pub fn cargo(env: &Env) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    env.apply(&mut cmd);
    cmd
}

pub fn target_dir(release: bool) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    base.join(if release { "release" } else { "debug" })
}

/// `cargo build [--release]` of every default member, exactly what a user
/// types: the agent (and with it the eBPF object), the control plane, the
/// waypoint, meshctl, the CNI plugin, the test workloads (`podctl`,
/// `podhttp`, `loadgen`) and `mesh-lab`. One command with one feature set,
/// so neither this nor the user's own build undoes the other.
pub fn build(env: &Env, release: bool) -> anyhow::Result<()> {
    step(format!(
        "cargo build{} (the whole workspace: agent with eBPF, control plane, waypoint, CLI, test workloads)",
        if release { " --release" } else { "" }
    ));
    let mut cmd = cargo(env);
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    run_visible(&mut cmd)
}
