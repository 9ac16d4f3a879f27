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

pub fn cargo(env: &Env) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .env("MESH_EBPF_TOOLCHAIN", &env.ebpf_toolchain);
    cmd
}

pub fn target_dir(release: bool) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    base.join(if release { "release" } else { "debug" })
}

/// Builds the agent (and with it the eBPF object), the control plane, the
/// waypoint, meshctl, the CNI plugin and the test binaries (`podctl`, `podhttp`, …).
pub fn build(env: &Env, release: bool) -> anyhow::Result<()> {
    step(format!(
        "building mesh-agent (with eBPF) and podctl{}",
        if release { " in release mode" } else { "" }
    ));
    let mut cmd = cargo(env);
    cmd.args([
        "build",
        "-p",
        "mesh-agent",
        "-p",
        "mesh-control",
        "-p",
        "mesh-e2e",
        "-p",
        "meshctl",
        "-p",
        "mesh-waypoint",
        "-p",
        "mesh-cni",
        "--bins",
    ]);
    if release {
        cmd.arg("--release");
    }
    run_visible(&mut cmd)
}

/// Binaries built by [`build`].
pub fn binaries(release: bool) -> mesh_e2e::Binaries {
    let dir = target_dir(release);
    mesh_e2e::Binaries {
        agent: dir.join("mesh-agent"),
        podctl: dir.join("podctl"),
        control: dir.join("mesh-control"),
        waypoint: dir.join("mesh-waypoint"),
        podhttp: dir.join("podhttp"),
    }
}
