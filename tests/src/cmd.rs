//! Running helper commands (`ip`, `bpftool`) with errors that show the
//! command line and its stderr.
use std::process::Command;

use anyhow::{bail, Context as _};

pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip` with arguments.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// SIGTERM, then SIGKILL if `child` has not exited within 5 s.
pub fn terminate(child: &mut std::process::Child) {
    use std::time::Duration;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let exited = mesh_testkit::try_eventually("exit after SIGTERM", Duration::from_secs(5), || {
        child.try_wait().ok().flatten()
    });
    if exited.is_ok() {
        return;
    }
    let _ = child.kill();
    let _ = child.wait();
}
