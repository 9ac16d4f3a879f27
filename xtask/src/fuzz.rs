//! `cargo xtask fuzz`: runs the libFuzzer targets of `fuzz/` (cargo-fuzz,
//! nightly) for a fixed time each and prints, per target, the executions
//! and coverage libFuzzer reports in its final `#N DONE cov: X ft: Y …`
//! line. cargo-fuzz is installed when missing. Targets are built without a
//! sanitizer (`-s none`: their code forbids `unsafe`, and AddressSanitizer
//! would halve the executions) but with debug assertions (`-a`: integer
//! overflow panics). New inputs go to `fuzz/target/corpus-work/<target>/`,
//! so the committed `fuzz/corpus/` only changes by hand.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use crate::{cargo::workspace_root, setup, step};

/// The figures of libFuzzer's final stats line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Done {
    pub executions: u64,
    pub coverage: u64,
    pub features: u64,
    pub corpus_units: u64,
    pub exec_per_sec: u64,
}

/// Parses `#440027<TAB>DONE   cov: 8416 ft: 26504 corp: 2702/2260Kb lim: 6281 exec/s: 9565 rss: 87Mb`.
pub fn parse_done(line: &str) -> Option<Done> {
    let mut words = line.split_whitespace();
    let executions = words.next()?.strip_prefix('#')?.parse().ok()?;
    if words.next()? != "DONE" {
        return None;
    }
    let mut done = Done {
        executions,
        ..Done::default()
    };
    let rest: Vec<&str> = words.collect();
    for pair in rest.chunks(2) {
        let [key, value] = pair else { break };
        let number = |v: &str| v.split('/').next().and_then(|n| n.parse().ok());
        match *key {
            "cov:" => done.coverage = number(value)?,
            "ft:" => done.features = number(value)?,
            "corp:" => done.corpus_units = number(value)?,
            "exec/s:" => done.exec_per_sec = number(value)?,
            _ => {}
        }
    }
    Some(done)
}

/// The path of a crashing input from `Test unit written to <path>`.
pub fn parse_artifact(line: &str) -> Option<&str> {
    line.split_once("Test unit written to ")
        .map(|(_, path)| path.trim())
}

/// The targets: the binaries in `fuzz/fuzz_targets/`.
fn targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".rs")
                .map(String::from)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        step("installing cargo-fuzz (cargo install cargo-fuzz --locked; a few minutes)");
        setup::run_visible(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// What one target's run ended with.
enum Outcome {
    Done(Done),
    Crash(String),
    Failed(String),
}

fn run_target(
    fuzz_dir: &Path,
    toolchain: &str,
    target: &str,
    seconds: u64,
) -> anyhow::Result<Outcome> {
    let work = fuzz_dir.join("target/corpus-work").join(target);
    std::fs::create_dir_all(&work)?;
    let mut child = Command::new("cargo")
        .current_dir(fuzz_dir)
        .arg(format!("+{toolchain}"))
        .args(["fuzz", "run", "-s", "none", "-a", target])
        .arg(&work)
        .arg(Path::new("corpus").join(target))
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-timeout=10",
            "-print_final_stats=1",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start cargo fuzz")?;
    let stderr = child.stderr.take().expect("piped");
    let (mut done, mut artifact, mut last) = (None, None, String::new());
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        // Corpus growth lines come by the thousand; the rest is progress
        // (cargo's build, libFuzzer's `pulse` lines) or a crash report.
        if !line.contains(" NEW ") && !line.contains(" REDUCE ") {
            eprintln!("  {line}");
        }
        done = parse_done(&line).or(done);
        if let Some(path) = parse_artifact(&line) {
            artifact = Some(path.to_string());
        }
        last = line;
    }
    let status = child.wait()?;
    Ok(match (artifact, done) {
        (Some(path), _) => Outcome::Crash(path),
        (None, Some(done)) if status.success() => Outcome::Done(done),
        _ => Outcome::Failed(format!("{status}: {last}")),
    })
}

/// `cargo xtask fuzz [--minutes N] [--target T]`.
pub fn run(minutes: f64, only: Option<&str>) -> anyhow::Result<()> {
    let fuzz_dir = workspace_root().join("fuzz");
    let mut names = targets(&fuzz_dir)?;
    if let Some(only) = only {
        if !names.iter().any(|n| n == only) {
            bail!("no fuzz target {only:?}; targets: {}", names.join(", "));
        }
        names.retain(|n| n == only);
    }
    let seconds = (minutes * 60.0).round().max(1.0) as u64;
    let toolchain = setup::ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let mut rows = vec![];
    for (i, name) in names.iter().enumerate() {
        step(format!(
            "fuzz {}/{}: {name} for {seconds} s",
            i + 1,
            names.len()
        ));
        rows.push((
            name.clone(),
            run_target(&fuzz_dir, &toolchain, name, seconds)?,
        ));
    }
    println!(
        "{:<20} {:>12} {:>8} {:>8} {:>8} {:>8}  result",
        "target", "executions", "exec/s", "cov", "ft", "corpus"
    );
    let mut bad = 0;
    for (name, outcome) in &rows {
        match outcome {
            Outcome::Done(d) => println!(
                "{name:<20} {:>12} {:>8} {:>8} {:>8} {:>8}  ok",
                d.executions, d.exec_per_sec, d.coverage, d.features, d.corpus_units
            ),
            Outcome::Crash(path) => {
                bad += 1;
                println!(
                    "{name:<20} {:>12} {:>8} {:>8} {:>8} {:>8}  CRASH: {path}",
                    "-", "-", "-", "-", "-"
                );
            }
            Outcome::Failed(why) => {
                bad += 1;
                println!(
                    "{name:<20} {:>12} {:>8} {:>8} {:>8} {:>8}  FAILED: {why}",
                    "-", "-", "-", "-", "-"
                );
            }
        }
    }
    if bad > 0 {
        bail!("{bad} fuzz target(s) crashed or failed; reproduce with `cargo +nightly fuzz run -s none -a <target> <input>` in fuzz/");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_final_stats_line() {
        let line = "#440027\tDONE   cov: 8416 ft: 26504 corp: 2702/2260Kb lim: 6281 exec/s: 9565 rss: 87Mb";
        assert_eq!(
            parse_done(line),
            Some(Done {
                executions: 440_027,
                coverage: 8416,
                features: 26_504,
                corpus_units: 2702,
                exec_per_sec: 9565,
            })
        );
    }

    #[test]
    fn ignores_other_libfuzzer_lines() {
        for line in [
            "#262144\tpulse  cov: 8000 ft: 20000 corp: 2000/2Mb lim: 4096 exec/s: 9000 rss: 80Mb",
            "#3\tINITED cov: 5 ft: 5 corp: 1/1b exec/s: 0 rss: 30Mb",
            "Done 440027 runs in 46 second(s)",
            "",
            "#x DONE cov: 1",
        ] {
            assert_eq!(parse_done(line), None, "{line}");
        }
    }

    #[test]
    fn a_malformed_figure_is_not_read_as_zero() {
        assert_eq!(parse_done("#5\tDONE   cov: many ft: 2"), None);
    }

    #[test]
    fn finds_the_crashing_input() {
        assert_eq!(
            parse_artifact("artifact_prefix='/f/artifacts/x/'; Test unit written to /f/artifacts/x/crash-da39a3ee"),
            Some("/f/artifacts/x/crash-da39a3ee")
        );
        assert_eq!(
            parse_artifact("==123== ERROR: libFuzzer: deadly signal"),
            None
        );
    }
}
