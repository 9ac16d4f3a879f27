//! A real resolver for tests and the demo: Debian's `dnsmasq` (installed
//! by set-up as `dnsmasq-base`) in a network namespace the caller made,
//! answering only what it is told (`--address=/<name>/<ip>`, hosts
//! files), never the machine's own configuration. Stopped on drop.
use std::{
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;

/// The binary `dnsmasq-base` installs.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A running dnsmasq.
pub struct Dnsmasq(Child);

impl Dnsmasq {
    /// dnsmasq in netns `netns` on `listen`:53, with `args` added (the
    /// names it answers, TTLs). Callers wait for it to answer.
    pub fn start(netns: &str, listen: Ipv4Addr, args: &[String]) -> anyhow::Result<Self> {
        let child = Command::new("ip")
            .args(["netns", "exec", netns, DNSMASQ])
            .args(["--keep-in-foreground", "--conf-file=/dev/null"])
            .args(["--no-resolv", "--no-hosts", "--user=root", "--pid-file="])
            .args(["--bind-interfaces", "--port=53"])
            .arg(format!("--listen-address={listen}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("starting {DNSMASQ} (cargo xtask setup installs dnsmasq-base)")
            })?;
        Ok(Self(child))
    }

    /// SIGHUP: dnsmasq reads its `--addn-hosts` files again.
    pub fn reload(&self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)?;
        Ok(())
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        crate::cmd::terminate(&mut self.0);
    }
}
