//! Offline validation of Kubernetes manifests against the API's JSON
//! schemas, with PyPI `kubernetes-validate` (schemas for Kubernetes 1.25 …
//! 1.37 bundled in the wheel; no API server needed). `cargo xtask setup`
//! installs the pinned version into [`KUBEVAL_HOME`]; the manifest test
//! (`tests/tests/deploy_manifests.rs`) runs it.
use std::path::PathBuf;

pub use crate::pins::{
    kubeval_version as installed_version, KUBEVAL_BIN, KUBEVAL_HOME, KUBEVAL_VERSION,
};

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
