//! The real `mesh-agent`, run inside the node's network namespace.
use std::{
    fs::OpenOptions,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};
use mesh_testkit::{try_eventually, Attempt};
use serde_json::Value;

use crate::topology::Pod;

pub const ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15000);
/// The agent's Prometheus endpoint (bound on every address of the node).
pub const METRICS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15020);

pub fn log_path(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}-agent.log"))
}

/// How to start one agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub bin: PathBuf,
    pub instance: String,
    pub node_netns: PathBuf,
    pub cgroup_root: PathBuf,
    pub redirect_ipv4: Ipv4Addr,
    pub redirect_ipv6: Option<Ipv6Addr>,
    /// More `run` flags (xDS, node name, …).
    pub extra_args: Vec<String>,
    pub log: PathBuf,
}

pub struct Agent {
    child: Child,
    pub spec: AgentSpec,
}

impl Agent {
    pub fn start(spec: AgentSpec) -> anyhow::Result<Self> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)?;
        // Joins the agent's cgroup before exec, so the agent and the
        // install child it spawns at once are in it from the start.
        let cgroup = agent_cgroup(&spec.cgroup_root)?;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
            .arg(&cgroup)
            .arg("nsenter")
            .arg(format!("--net={}", spec.node_netns.display()))
            .arg("--")
            .arg(&spec.bin)
            .args([
                "--instance",
                &spec.instance,
                "--log",
                "info",
                "run",
                "--cgroup-root",
            ])
            .arg(&spec.cgroup_root)
            .args(["--redirect-ipv4", &spec.redirect_ipv4.to_string()]);
        if let Some(v6) = spec.redirect_ipv6 {
            cmd.args(["--redirect-ipv6", &v6.to_string()]);
        }
        let child = cmd
            .args(&spec.extra_args)
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("starting mesh-agent under nsenter")?;
        let mut agent = Self { child, spec };
        let ready = try_eventually("mesh-agent ready", Duration::from_secs(20), || {
            match agent.child.try_wait() {
                Ok(Some(status)) => {
                    return Attempt::GiveUp(format!("mesh-agent exited during start-up ({status})"))
                }
                Err(e) => return Attempt::GiveUp(format!("mesh-agent: {e}")),
                Ok(None) => {}
            }
            match crate::netns::http_get_in(&agent.spec.node_netns, ADMIN, "/healthz/ready") {
                Ok(_) => Attempt::Done(()),
                Err(e) => Attempt::Pending(format!("/healthz/ready: {e:#}")),
            }
        });
        match ready {
            Ok(()) => Ok(agent),
            Err(e) => {
                agent.stop();
                bail!("{e}:\n{}", agent.log_tail())
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits (bounded) for the agent to exit by itself; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        try_eventually("mesh-agent exit", timeout, || {
            self.child.try_wait().ok().flatten()
        })
        .ok()
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        crate::cmd::terminate(&mut self.child);
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.spec.bin)
            .args(["--instance", &self.spec.instance])
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
        let body = crate::netns::http_get_in(&self.spec.node_netns, ADMIN, path)?;
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
        let what = format!("the agent's record of a connection from {source}");
        try_eventually(&what, Duration::from_secs(10), || {
            let conns = match self.connections() {
                Ok(conns) => conns,
                Err(e) => return Attempt::GiveUp(format!("{e:#}")),
            };
            let found = conns["recent"]
                .as_array()
                .and_then(|r| r.iter().find(|c| c["source"] == source).cloned());
            match found {
                Some(record) => Attempt::Done(record),
                None => Attempt::Pending(conns.to_string()),
            }
        })
        .map_err(Into::into)
    }

    /// `/stats/mesh`: xDS state, workloads and certificates (mesh mode only).
    pub fn mesh(&self) -> anyhow::Result<Value> {
        self.admin("/stats/mesh")
    }

    /// `/stats/capture`: programs, kernel counters, enrolled pods.
    pub fn capture(&self) -> anyhow::Result<Value> {
        self.admin("/stats/capture")
    }

    /// The Prometheus exposition on the metrics port (15020).
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        crate::netns::http_get_in(&self.spec.node_netns, METRICS, "/metrics")
    }

    /// `POST <path>` on the admin endpoint; the response body.
    pub fn admin_post(&self, path: &str) -> anyhow::Result<String> {
        crate::netns::http_in(&self.spec.node_netns, ADMIN, "POST", path)
    }

    /// A GET on the admin endpoint, as JSON.
    pub fn admin_json(&self, path: &str) -> anyhow::Result<Value> {
        self.admin(path)
    }

    /// A kernel counter by name.
    pub fn kernel_counter(&self, name: &str) -> anyhow::Result<u64> {
        self.capture()?["kernel_counters"][name]
            .as_u64()
            .with_context(|| format!("no kernel counter {name}"))
    }
}

/// The cgroup the agent runs in: `<cgroup_root>/mesh-agent`, as a DaemonSet
/// pod sits below the cgroup root its programs attach at, so the kernel sees
/// the agent's own sockets (sock_ops vouches for its connections to STRICT
/// pods). The cgroup v2 root itself when `cgroup_root` is that root. The
/// directory goes with the node's cgroup.
fn agent_cgroup(cgroup_root: &std::path::Path) -> anyhow::Result<PathBuf> {
    if crate::cgroup::cgroup2_mount().is_ok_and(|root| root == cgroup_root) {
        return Ok(cgroup_root.to_path_buf());
    }
    let dir = cgroup_root.join("mesh-agent");
    match std::fs::create_dir(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("creating {}", dir.display()))
        }
        _ => Ok(dir),
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes an agent instance's pins and, unless the test is failing, its log.
pub fn remove_pins_and_log(pins: &std::path::Path, log: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(pins) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("cleanup: cannot remove {}: {e}", pins.display());
        }
    }
    if std::thread::panicking() {
        eprintln!("agent log kept for inspection: {}", log.display());
    } else {
        let _ = std::fs::remove_file(log);
    }
}
