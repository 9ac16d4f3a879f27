//! Offline validation of Kubernetes manifests against the API's JSON
//! schemas, with PyPI `kubernetes-validate` (schemas for Kubernetes 1.25 …
//! 1.37 bundled in the wheel; no API server needed). `cargo xtask setup`
//! installs the pinned version into [`KUBEVAL_HOME`]; the manifest test
//! (`xtask/tests/deploy_manifests.rs`) runs it.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The `kubernetes-validate` release the manifest test is written against.
pub const KUBEVAL_VERSION: &str = "1.37.0";
/// The venv `cargo xtask setup` installs it into.
pub const KUBEVAL_HOME: &str = "/opt/mesh-tools/kubeval";
/// Its command.
pub const KUBEVAL_BIN: &str = "/opt/mesh-tools/kubeval/bin/kubernetes-validate";

/// The version `bin --version` reports, if it runs.
pub fn installed_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then_some(version)
}

/// The pinned validator, or why it is not usable and how to install it.
pub fn kubeval_bin() -> Result<PathBuf, String> {
    let bin = PathBuf::from(KUBEVAL_BIN);
    match installed_version(&bin) {
        Some(v) if v == KUBEVAL_VERSION => Ok(bin),
        Some(v) => Err(format!(
            "{KUBEVAL_BIN} is version {v}, expected {KUBEVAL_VERSION}: run `cargo xtask setup`"
        )),
        None => Err(format!(
            "{KUBEVAL_BIN} not found: run `cargo xtask setup` (installs PyPI kubernetes-validate {KUBEVAL_VERSION})"
        )),
    }
}
