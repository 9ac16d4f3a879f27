//! The real `mesh-agent`, run inside the node's network namespace.
use std::{
    fs::OpenOptions,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::Value;

use crate::topology::{Pod, Topology, NODE_IP, NODE_IP6};

pub const ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15000);

pub fn log_path(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-agent.log"))
}

pub struct Agent {
    child: Child,
    bin: PathBuf,
    instance: String,
    node_netns: PathBuf,
    log: PathBuf,
}

impl Agent {
    pub fn start(topo: &Topology) -> anyhow::Result<Self> {
        let log = log_path(&topo.prefix);
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", topo.node.path().display()))
            .arg("--")
            .arg(&topo.bins.agent)
            .args([
                "--instance",
                &topo.prefix,
                "--log",
                "info",
                "run",
                "--cgroup-root",
            ])
            .arg(&topo.cgroup_root.path)
            .args(["--redirect-ipv4", &NODE_IP.to_string()])
            .args(["--redirect-ipv6", &NODE_IP6.to_string()])
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("starting mesh-agent under nsenter")?;
        let mut agent = Self {
            child,
            bin: topo.bins.agent.clone(),
            instance: topo.prefix.clone(),
            node_netns: topo.node.path(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "mesh-agent exited during start-up ({status}):\n{}",
                    agent.log_tail()
                );
            }
            if topo.node.http_get(ADMIN, "/healthz/ready").is_ok() {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                agent.stop();
                bail!("mesh-agent not ready after 20 s:\n{}", agent.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(["--instance", &self.instance])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "mesh-agent {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn enroll(&self, pod: &Pod, exclude_ports: &[u16]) -> anyhow::Result<()> {
        let path = pod.netns.path();
        let mut args = vec![
            "enroll".to_string(),
            "--netns".into(),
            path.display().to_string(),
        ];
        for port in exclude_ports {
            args.extend(["--exclude-port".into(), port.to_string()]);
        }
        self.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .map(drop)
    }

    pub fn unenroll(&self, pod: &Pod) -> anyhow::Result<()> {
        self.cli(&[
            "unenroll",
            "--netns",
            &pod.netns.path().display().to_string(),
        ])
        .map(drop)
    }

    fn admin(&self, path: &str) -> anyhow::Result<Value> {
        let body = crate::netns::http_get_in(&self.node_netns, ADMIN, path)?;
        Ok(serde_json::from_str(&body)?)
    }

    /// `/stats/connections`: totals and recent connections.
    pub fn connections(&self) -> anyhow::Result<Value> {
        self.admin("/stats/connections")
    }

    /// The agent's record of the finished connection from `source`, waiting
    /// (at most 10 s): the agent writes it after both directions closed,
    /// which may be just after the client saw its EOF.
    pub fn finished_connection(&self, source: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let conns = self.connections()?;
            let found = conns["recent"]
                .as_array()
                .and_then(|r| r.iter().find(|c| c["source"] == source).cloned());
            if let Some(record) = found {
                return Ok(record);
            }
            if Instant::now() > deadline {
                bail!("agent has no record of a connection from {source}: {conns}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `/stats/capture`: programs, kernel counters, enrolled pods.
    pub fn capture(&self) -> anyhow::Result<Value> {
        self.admin("/stats/capture")
    }

    /// A kernel counter by name.
    pub fn kernel_counter(&self, name: &str) -> anyhow::Result<u64> {
        self.capture()?["kernel_counters"][name]
            .as_u64()
            .with_context(|| format!("no kernel counter {name}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
