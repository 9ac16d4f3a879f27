//! PyPI `kubernetes-validate` in a venv under
//! [`crate::pins::KUBEVAL_HOME`]: offline JSON-schema validation of
//! the rendered `deploy/` manifests (no API server can run here).
use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Context as _};

use super::{python_venv, run_visible};
use crate::step;

/// Every package of the venv pinned, so a new upload of a dependency cannot
/// change what the manifest test checks. Wheels only (`rpds-py` is
/// compiled; no Rust or C toolchain is involved at install time).
const REQUIREMENTS: &str = "\
kubernetes-validate==1.37.0
attrs==26.1.0
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.3
PyYAML==6.0.3
referencing==0.37.0
rpds-py==2026.9.1
typing_extensions==4.16.0
";

/// Installs the pinned validator unless `kubernetes-validate --version`
/// already reports it (idempotent; a second run only asks the version).
pub fn ensure_kubeval() -> anyhow::Result<()> {
    use crate::pins::{
        kubeval_version as installed_version, KUBEVAL_BIN, KUBEVAL_HOME, KUBEVAL_VERSION,
    };
    debug_assert!(REQUIREMENTS.contains(&format!("kubernetes-validate=={KUBEVAL_VERSION}")));
    if installed_version(Path::new(KUBEVAL_BIN)).as_deref() == Some(KUBEVAL_VERSION) {
        step(format!(
            "kubernetes-validate {KUBEVAL_VERSION} present ({KUBEVAL_BIN})"
        ));
        return Ok(());
    }
    let started = Instant::now();
    step(format!(
        "installing kubernetes-validate {KUBEVAL_VERSION} from PyPI into {KUBEVAL_HOME} (~20 MB download)"
    ));
    let home = Path::new(KUBEVAL_HOME);
    python_venv(home)?;
    let req = home.join("requirements.txt");
    std::fs::write(&req, REQUIREMENTS).with_context(|| format!("writing {}", req.display()))?;
    run_visible(
        Command::new(home.join("bin/pip"))
            .args(["install", "--quiet", "--no-deps", "--only-binary", ":all:"])
            .arg("-r")
            .arg(&req),
    )
    .with_context(|| {
        format!(
            "pip could not install kubernetes-validate=={KUBEVAL_VERSION}: check access to PyPI (or PIP_INDEX_URL)"
        )
    })?;
    match installed_version(Path::new(KUBEVAL_BIN)) {
        Some(v) if v == KUBEVAL_VERSION => {
            step(format!(
                "kubernetes-validate {v} installed in {:.1} s: {KUBEVAL_BIN}",
                started.elapsed().as_secs_f64()
            ));
            Ok(())
        }
        other => bail!("{KUBEVAL_BIN} --version reports {other:?}, expected {KUBEVAL_VERSION}"),
    }
}
