//! `cargo xtask test`: set-up, lint, the debug build, then every unit and
//! end-to-end test. `cargo test --no-fail-fast` runs every test binary
//! even when one fails, and the run ends with one summary
//! ([`crate::test_summary`]) naming each failing test and its binary.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use crate::{cargo, setup, step, test_summary::Summary};

pub fn run(lint: bool, extra: &[String]) -> anyhow::Result<()> {
    crate::require_root("cargo xtask test")?;
    step("cargo xtask test: installing prerequisites, linting, building, then running every test");
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
    step("cargo test --no-fail-fast (unit tests, then end-to-end tests in network namespaces)");
    let mut cmd = cargo::cargo(&env);
    cmd.args(["test", "--no-fail-fast"]).args(extra).env(
        "MESH_AGENT_BIN",
        cargo::target_dir(false).join("mesh-agent"),
    );
    let (summary, status) = run_summarised(cmd)?;
    print!("{}", summary.report());
    if !status.success() || !summary.ok() {
        bail!("cargo test failed ({status}): {}", summary.failures_line());
    }
    anyhow::ensure!(summary.passed > 0, "no test ran");
    Ok(())
}

/// Runs `cargo test` with its stdout and stderr merged into one pipe (so
/// each test's result follows the `Running <binary>` line cargo prints on
/// stderr), passing every line through and feeding it to the summary.
fn run_summarised(mut cmd: Command) -> anyhow::Result<(Summary, std::process::ExitStatus)> {
    let (reader, writer) = std::io::pipe().context("creating a pipe for cargo test's output")?;
    let writer2 = writer.try_clone()?;
    let mut child = cmd
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .spawn()
        .context("starting cargo test")?;
    // The child holds the write ends now; ours go with `cmd`, so the
    // reader sees EOF when cargo and every test binary have exited.
    drop(cmd);
    let mut summary = Summary::default();
    for line in BufReader::new(reader).lines() {
        let line = line?;
        println!("{line}");
        summary.feed(&line);
    }
    let status = child.wait()?;
    Ok((summary, status))
}
