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

/// `cargo` in the workspace root, with the eBPF toolchain set-up chose and
/// without the variables `cargo run` set for xtask itself.
pub fn cargo(env: &Env) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(&name);
        }
    }
    env.apply(&mut cmd);
    cmd
}

/// The variables `cargo run` sets for the program it runs (xtask). Left in
/// place, they would reach every build script: some track them (`ring`
/// reruns when `CARGO_MANIFEST_DIR` changes), so the same build from a
/// user's shell would see another environment and rebuild half the
/// workspace, and the other way round.
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_do_not_inherit_what_cargo_set_for_xtask() {
        // `cargo test` sets these for this test binary as `cargo run` does
        // for xtask.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let env = Env {
            ebpf_toolchain: Some("nightly-2026-05-19".into()),
        };
        let cmd = cargo(&env);
        let envs: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        for removed in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME"] {
            assert!(
                envs.contains(&(removed.to_string(), None)),
                "{removed} not removed: {envs:?}"
            );
        }
        assert!(envs.contains(&(
            "MESH_EBPF_TOOLCHAIN".to_string(),
            Some("nightly-2026-05-19".to_string())
        )));
        assert!(!set_by_cargo_run("CARGO_HOME"));
        assert!(!set_by_cargo_run("CARGO_TARGET_DIR"));
    }
}
