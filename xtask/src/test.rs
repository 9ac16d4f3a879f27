//! `cargo xtask test`: lint, then every unit and end-to-end test.
use crate::{cargo, setup, step};

pub fn run(lint: bool, extra: &[String]) -> anyhow::Result<()> {
    crate::require_root("cargo xtask test")?;
    let env = setup::ensure_all()?;
    if lint {
        step("cargo fmt --check");
        setup::run_visible(cargo::cargo(&env).args(["fmt", "--all", "--check"]))?;
        step("cargo clippy --all-targets -- -D warnings");
        setup::run_visible(cargo::cargo(&env).args([
            "clippy",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    cargo::build(&env, false)?;
    step("cargo test (unit tests, then end-to-end tests in network namespaces)");
    let agent = cargo::binaries(false).agent;
    setup::run_visible(
        cargo::cargo(&env)
            .args(["test"])
            .args(extra)
            .env("MESH_AGENT_BIN", agent),
    )
}
