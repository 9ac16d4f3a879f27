//! Installs what the build and the tests need on a fresh machine of this
//! kind (Debian 12, rustup): Debian packages, a nightly toolchain with
//! `rust-src` for the eBPF build, and `bpf-linker` 0.10.4 (0.10.x links
//! against rustc's own LLVM 22; newer releases need a system LLVM).
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::step;

/// Debian packages: (command, or absolute path of a file, that proves it is
/// installed; package).
const PACKAGES: &[(&str, &str)] = &[
    ("bpftool", "bpftool"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("protoc", "protobuf-compiler"),
    // protoc's well-known types (google/protobuf/*.proto) ship separately.
    (
        "/usr/include/google/protobuf/struct.proto",
        "libprotobuf-dev",
    ),
    ("tcpdump", "tcpdump"),
    // The metrics test scrapes the agent with a real Prometheus.
    ("prometheus", "prometheus"),
];
const BPF_LINKER_VERSION: &str = "0.10.4";
/// Used only when no `nightly` toolchain exists: LLVM 22, like bpf-linker's.
const DATED_NIGHTLY: &str = "nightly-2026-05-19";

/// What later cargo invocations need to know.
pub struct Env {
    /// `MESH_EBPF_TOOLCHAIN` for the agent's build script.
    pub ebpf_toolchain: String,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command with its output shown (it is the progress).
pub fn run_visible(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn ensure_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(probe, _)| {
            if probe.starts_with('/') {
                !std::path::Path::new(probe).exists()
            } else {
                !have(probe)
            }
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        let all: Vec<&str> = PACKAGES.iter().map(|(_, pkg)| *pkg).collect();
        step(format!("Debian packages present: {}", all.join(", ")));
        return Ok(());
    }
    step(format!("installing Debian packages: {}", missing.join(" ")));
    if !have("apt-get") {
        bail!(
            "missing {} and no apt-get to install them; install them by hand",
            missing.join(" ")
        );
    }
    // update, then install: never both at once (a clean hook can race).
    run_visible(Command::new("apt-get").args(["update", "-q"]))
        .context("apt-get update failed: check network access to the Debian mirror")?;
    run_visible(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("could not install {}", missing.join(" ")))
}

fn toolchains() -> anyhow::Result<String> {
    let out = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context(
            "rustup not found: the eBPF build needs rustup (nightly toolchain with rust-src)",
        )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_nightly() -> anyhow::Result<String> {
    let list = toolchains()?;
    let toolchain = if list
        .lines()
        .any(|l| l.starts_with("nightly-x86_64") || l.starts_with("nightly "))
    {
        "nightly".to_string()
    } else if list.lines().any(|l| l.starts_with(DATED_NIGHTLY)) {
        DATED_NIGHTLY.to_string()
    } else {
        step(format!(
            "installing Rust {DATED_NIGHTLY} (eBPF build toolchain)"
        ));
        run_visible(Command::new("rustup").args([
            "toolchain",
            "install",
            DATED_NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
        DATED_NIGHTLY.to_string()
    };
    let components = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            &toolchain,
        ])
        .output()?;
    if String::from_utf8_lossy(&components.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        step(format!("toolchain {toolchain} with rust-src present"));
    } else {
        step(format!("adding rust-src to {toolchain}"));
        run_visible(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            &toolchain,
        ]))?;
    }
    Ok(toolchain)
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &version {
        if String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION) {
            step(format!("bpf-linker {BPF_LINKER_VERSION} present"));
            return Ok(());
        }
    }
    step(format!(
        "installing bpf-linker {BPF_LINKER_VERSION} (about a minute)"
    ));
    run_visible(Command::new("cargo").args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--force",
    ]))
    .context("could not install bpf-linker; the eBPF programs cannot be linked without it")
}

fn ensure_lint_tools() -> anyhow::Result<()> {
    let ok = |sub: &str| {
        Command::new("cargo")
            .args([sub, "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("fmt") && ok("clippy") {
        return Ok(());
    }
    step("adding rustfmt and clippy to the stable toolchain");
    run_visible(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
}

pub fn ensure_all() -> anyhow::Result<Env> {
    step("checking prerequisites");
    ensure_packages()?;
    ensure_lint_tools()?;
    let ebpf_toolchain = ensure_nightly()?;
    ensure_bpf_linker()?;
    Ok(Env { ebpf_toolchain })
}
