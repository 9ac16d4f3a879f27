//! Packet capture with tcpdump inside a network namespace, to check what
//! crosses a link (e.g. that no plaintext payload does).
use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::Context as _;
use mesh_testkit::{try_eventually, Attempt};

pub struct Capture {
    child: Child,
    pub file: PathBuf,
}

impl Capture {
    /// Captures TCP on `iface` of the namespace at `netns` into `file`.
    pub fn start(netns: &std::path::Path, iface: &str, file: PathBuf) -> anyhow::Result<Self> {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["--", "tcpdump", "-i", iface, "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting tcpdump (is it installed? `cargo xtask setup` installs it)")?;
        // tcpdump says "listening on <iface>" on stderr once its filter is
        // set and the file is open; read stderr to the end so it never blocks.
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut capture = Self { child, file };
        let mut said = Vec::new();
        let listening = try_eventually("tcpdump listening", Duration::from_secs(5), || {
            said.extend(lines.try_iter());
            if said.iter().any(|l| l.contains("listening on")) {
                return Attempt::Done(());
            }
            match capture.child.try_wait() {
                Ok(Some(status)) => Attempt::GiveUp(format!("tcpdump exited ({status})")),
                _ => Attempt::Pending(format!("stderr: {said:?}")),
            }
        });
        listening.map_err(|e| anyhow::anyhow!("{e} (stderr: {said:?})"))?;
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
