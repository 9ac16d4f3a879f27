//! Progress lines and the root check, the same in `cargo xtask` and in
//! `mesh-lab`.

/// Prints a progress line, flushed at once.
pub fn step(msg: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "\x1b[1m==>\x1b[0m {msg}");
    let _ = out.flush();
}

/// Fails clearly when not root.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root (network namespaces, cgroups, eBPF); run it as root"
    );
    Ok(())
}
