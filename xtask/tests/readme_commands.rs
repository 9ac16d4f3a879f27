//! The commands the README gives exist as written: every `cargo xtask …`
//! line is accepted by xtask's command line (checked with `--help`
//! appended, so nothing is installed, built or run), and every
//! `<binary> --help` line prints that binary's help. The demo's own
//! commands are run against a live demo by `xtask/lab/tests/demo_guide.rs`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// The commands of the README: the `cargo xtask …` in backticks of the
/// table in "The two commands", and each line of the "Other commands" block.
fn commands() -> Vec<String> {
    let text = readme();
    let mut out = vec![];
    let two = &text[text
        .find("## The two commands")
        .expect("README: The two commands")..];
    let two = &two[..two[3..].find("\n## ").map_or(two.len(), |i| i + 3)];
    for line in two.lines().filter(|l| l.starts_with('|')) {
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 1 && part.starts_with("cargo xtask") {
                out.push(part.to_string());
            }
        }
    }
    let start = text
        .find("## Other commands")
        .expect("README: Other commands");
    let block = &text[start..];
    let block = &block[block.find("```sh").unwrap() + 5..];
    let block = &block[..block.find("```").unwrap()];
    for line in block.lines() {
        let command = line.split('#').next().unwrap_or("").trim();
        if !command.is_empty() {
            out.push(command.to_string());
        }
    }
    out
}

/// `target/<profile>`: the test binary is `target/<profile>/deps/<name>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

#[test]
fn every_readme_command_exists_as_written() {
    let commands = commands();
    assert!(
        commands.iter().any(|c| c == "cargo xtask test"),
        "the README's test command: {commands:?}"
    );
    assert!(commands
        .iter()
        .any(|c| c.starts_with("cargo xtask bench l7")));
    let mut failed = vec![];
    for command in &commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        let mut cmd = match words.as_slice() {
            ["cargo", "xtask", rest @ ..] => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
                c.args(rest);
                c
            }
            [binary, rest @ ..] => {
                let bin = profile_dir().join(binary);
                assert!(
                    bin.is_file(),
                    "{} is not built: run `cargo xtask test` (it builds the workspace first)",
                    bin.display()
                );
                let mut c = Command::new(bin);
                c.args(rest);
                c
            }
            [] => continue,
        };
        if !words.contains(&"--help") {
            cmd.arg("--help");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("Usage") {
            failed.push(format!(
                "`{command}`: {} {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn a_misspelt_command_is_refused() {
    // The check above can fail: a subcommand xtask does not have.
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "l5", "--help"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
