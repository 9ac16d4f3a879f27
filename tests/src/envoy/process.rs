//! Starting helper processes inside a network namespace, and reading
//! their logs.
use std::{
    fs::File,
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;

/// Starts `bin args…` in `netns` (through `nsenter`, which execs: the
/// child's pid is the program's own), pinned to `cpu` with `taskset` when
/// given, stdout and stderr to `log`.
pub fn spawn_in(
    netns: Option<&Path>,
    cpu: Option<u32>,
    bin: &Path,
    args: &[String],
    log: &Path,
) -> anyhow::Result<Child> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("--");
            c
        }
        None => Command::new("env"),
    };
    if let Some(cpu) = cpu {
        cmd.args(["taskset", "-c", &cpu.to_string()]);
    }
    cmd.arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
