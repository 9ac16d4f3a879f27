//! PyPI `arize-phoenix` in a venv under [`crate::pins::PHOENIX_HOME`]: a
//! real OpenTelemetry trace backend (OTLP over gRPC and HTTP, spans
//! queryable over its REST API) for the trace test. Large (~850 MB
//! installed, wheels only), so set-up says so before it starts.
use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Context as _};

use super::{python_venv, run_visible};
use crate::step;

/// Installs the pinned Phoenix unless the venv already reports it
/// (idempotent; a second run only asks the version).
pub fn ensure_phoenix() -> anyhow::Result<()> {
    use crate::pins::{
        phoenix_version as installed_version, PHOENIX_BIN, PHOENIX_HOME, PHOENIX_PYTHON,
        PHOENIX_VERSION,
    };
    if installed_version(Path::new(PHOENIX_PYTHON)).as_deref() == Some(PHOENIX_VERSION) {
        step(format!(
            "Arize Phoenix {PHOENIX_VERSION} present ({PHOENIX_BIN})"
        ));
        return Ok(());
    }
    let started = Instant::now();
    step(format!(
        "installing Arize Phoenix {PHOENIX_VERSION} from PyPI into {PHOENIX_HOME} \
         (~850 MB installed; about a minute with a fast mirror)"
    ));
    let home = Path::new(PHOENIX_HOME);
    python_venv(home)?;
    let requirement = format!("arize-phoenix=={PHOENIX_VERSION}");
    // Dependencies resolve within the pinned release's own bounds; wheels
    // only, so no compiler runs. pip's progress bar is the progress.
    run_visible(
        Command::new(home.join("bin/pip"))
            .args(["install", "--only-binary", ":all:", "--progress-bar", "on"])
            .arg(&requirement),
    )
    .with_context(|| {
        format!("pip could not install {requirement}: check access to PyPI (or PIP_INDEX_URL)")
    })?;
    match installed_version(Path::new(PHOENIX_PYTHON)) {
        Some(v) if v == PHOENIX_VERSION => {
            step(format!(
                "Arize Phoenix {v} installed in {:.1} s: {PHOENIX_BIN}",
                started.elapsed().as_secs_f64()
            ));
            Ok(())
        }
        other => {
            bail!("{PHOENIX_HOME} reports arize-phoenix {other:?}, expected {PHOENIX_VERSION}")
        }
    }
}
