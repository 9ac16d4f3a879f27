//! Packet capture with tcpdump inside a network namespace, to check what
//! crosses a link (e.g. that no plaintext payload does).
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

pub struct Capture {
    child: Child,
    pub file: PathBuf,
}

impl Capture {
    /// Captures TCP on `iface` of the namespace at `netns` into `file`.
    pub fn start(netns: &std::path::Path, iface: &str, file: PathBuf) -> anyhow::Result<Self> {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["--", "tcpdump", "-i", iface, "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump (is it installed? `cargo xtask setup` installs it)")?;
        let capture = Self { child, file };
        // tcpdump creates the file once it listens.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !capture.file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(capture)
    }

    /// Stops the capture and returns the raw pcap bytes.
    pub fn finish(mut self) -> anyhow::Result<Vec<u8>> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
        Ok(std::fs::read(&self.file)?)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// True if `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
