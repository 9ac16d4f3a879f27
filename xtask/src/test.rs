//! `cargo xtask test`: lint, then every unit and end-to-end test, ending
//! with one plain `tests: N passed, M failed` line.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

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
    let mut cmd = cargo::cargo(&env);
    cmd.args(["test"]).args(extra).env("MESH_AGENT_BIN", agent);
    let (passed, failed) = run_counting(&mut cmd)?;
    println!("tests: {passed} passed, {failed} failed");
    anyhow::ensure!(passed > 0, "no test ran");
    Ok(())
}

/// Runs `cargo test`, passing its output through, and sums the
/// `test result:` lines of every test binary.
fn run_counting(cmd: &mut Command) -> anyhow::Result<(u64, u64)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, "passed");
            failed += count(rest, "failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("tests: {passed} passed, {failed} failed");
        bail!("cargo test failed ({status})");
    }
    Ok((passed, failed))
}

/// The number before `label` in "ok. 7 passed; 0 failed; …".
fn count(summary: &str, label: &str) -> u64 {
    let summary = summary
        .trim_start_matches("ok.")
        .trim_start_matches("FAILED.");
    summary
        .split(';')
        .find_map(|part| part.trim().strip_suffix(label)?.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_come_from_cargo_summaries() {
        let line =
            "ok. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.5s";
        assert_eq!(super::count(line, "passed"), 7);
        assert_eq!(super::count(line, "failed"), 2);
        assert_eq!(
            super::count("FAILED. 3 passed; 1 failed; 0 ignored", "failed"),
            1
        );
    }
}
