//! Processes inside a pod: `podctl` joined to the pod's cgroup leaf and netns.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _};
use mesh_testkit::try_eventually;
use serde_json::Value;

use crate::topology::Pod;

fn podctl(bin: &std::path::Path, pod: &Pod, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--netns")
        .arg(pod.netns.path())
        .arg("--cgroup")
        .arg(&pod.cgroup.path)
        .args(args);
    cmd
}

/// Runs `podctl <args>` in `pod` to completion; returns its last JSON line.
pub fn run(bin: &std::path::Path, pod: &Pod, args: &[&str]) -> anyhow::Result<Value> {
    let out = podctl(bin, pod, args)
        .output()
        .with_context(|| format!("running podctl in pod {}", pod.name))?;
    if !out.status.success() {
        bail!(
            "podctl {} in pod {} failed: {}",
            args.join(" "),
            pod.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("podctl printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

/// A long-running `podctl serve` in a pod; killed on drop.
pub struct Server {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    pub pod: String,
}

impl Server {
    pub fn start(bin: &std::path::Path, pod: &Pod, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_until(bin, pod, args, |v| v["ready"] == true)
    }

    /// Starts `podctl <args>` in the background and waits (10 s) for a line
    /// matching `ready`.
    pub fn start_until(
        bin: &std::path::Path,
        pod: &Pod,
        args: &[&str],
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Self> {
        let mut child = podctl(bin, pod, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting podctl serve in pod {}", pod.name))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let server = Self {
            child,
            lines,
            pod: pod.name.clone(),
        };
        server.printed_line(Duration::from_secs(10), ready)?;
        Ok(server)
    }

    /// `podctl serve` with an echo port and an optional sink port.
    pub fn serve(
        bin: &std::path::Path,
        pod: &Pod,
        echo_port: u16,
        sink_port: Option<u16>,
    ) -> anyhow::Result<Self> {
        let echo = echo_port.to_string();
        let sink = sink_port.map(|p| p.to_string());
        let mut args = vec!["serve", "--echo-port", echo.as_str()];
        if let Some(sink) = &sink {
            args.extend(["--sink-port", sink.as_str()]);
        }
        Self::start(bin, pod, &args)
    }

    /// Waits (bounded) until a line matching `pred` was printed.
    pub fn printed_line(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        try_eventually("the expected line", timeout, || {
            let lines = self.lines.lock().unwrap();
            match lines.iter().find(|v| pred(v)) {
                Some(v) => Ok(v.clone()),
                None => Err(format!("{} lines printed, none matching", lines.len())),
            }
        })
        .map_err(|e| anyhow!("server in pod {}: {e}", self.pod))
    }

    /// Peer addresses of the first `n` connections accepted on `port`,
    /// waiting (at most 10 s) for the server to report them: its output
    /// reaches us asynchronously.
    pub fn accepted_peers(&self, port: u16, n: usize) -> Vec<String> {
        try_eventually("accepted connections", Duration::from_secs(10), || {
            let peers = self.peers_now(port);
            if peers.len() >= n {
                Ok(peers)
            } else {
                Err(format!("{} of {n} reported", peers.len()))
            }
        })
        .unwrap_or_else(|_| self.peers_now(port))
    }

    fn peers_now(&self, port: u16) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["port"] == port)
            .filter_map(|v| v["accepted"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
