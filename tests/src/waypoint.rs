//! A `mesh-waypoint` process in a pod's network namespace (the waypoint
//! pod is never captured), its admin endpoint, and its log.
use std::{
    fs::OpenOptions,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

/// The waypoint's admin port (contract: docs/issue5-interfaces.md §4).
pub const ADMIN_PORT: u16 = 15000;
/// The plain HTTP listener (the same routes as inside HBONE).
pub const HTTP_PORT: u16 = 15080;

/// How to start one waypoint.
#[derive(Debug, Clone)]
pub struct WaypointSpec {
    pub bin: PathBuf,
    /// Gateway name and namespace (`istio.io/use-waypoint: <name>`).
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub pod_ip: Ipv4Addr,
    pub pod_name: String,
    pub netns: PathBuf,
    pub xds: String,
    pub extra_args: Vec<String>,
    pub log: PathBuf,
}

/// A running waypoint; terminated on drop.
pub struct Waypoint {
    child: Child,
    pub spec: WaypointSpec,
    /// Keep the log on drop (start-up failed).
    keep_log: bool,
}

impl Waypoint {
    /// Starts it and waits (30 s) for `/ready` (xDS received).
    pub fn start(spec: WaypointSpec) -> anyhow::Result<Self> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", spec.netns.display()))
            .arg("--")
            .arg(&spec.bin)
            .args(["--xds-addr", &spec.xds])
            .args(["--name", &spec.name, "--namespace", &spec.namespace])
            .args(["--service-account", &spec.service_account])
            .args(["--pod-ip", &spec.pod_ip.to_string()])
            .args(["--pod-name", &spec.pod_name])
            .args(&spec.extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .context("starting mesh-waypoint under nsenter")?;
        let mut wp = Self {
            child,
            spec,
            keep_log: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = wp.child.try_wait()? {
                wp.keep_log = true;
                bail!(
                    "mesh-waypoint exited during start-up ({status}):\n{}",
                    wp.log_tail()
                );
            }
            if crate::netns::http_get_in(&wp.spec.netns, wp.admin(), "/ready").is_ok() {
                return Ok(wp);
            }
            if Instant::now() > deadline {
                wp.stop();
                wp.keep_log = true;
                bail!(
                    "mesh-waypoint not ready after 30 s (log {}):\n{}",
                    wp.spec.log.display(),
                    wp.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from((self.spec.pod_ip, ADMIN_PORT))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from((self.spec.pod_ip, HTTP_PORT))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET` on the admin port; the body.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        crate::netns::http_get_in(&self.spec.netns, self.admin(), path)
    }

    pub fn metrics_text(&self) -> anyhow::Result<String> {
        self.admin_get("/metrics")
    }

    pub fn config_dump(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.admin_get("/config_dump")?)?)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn stop(&mut self) {
        crate::cmd::terminate(&mut self.child);
    }
}

impl Drop for Waypoint {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || self.keep_log {
            eprintln!("waypoint log kept: {}", self.spec.log.display());
        } else {
            let _ = std::fs::remove_file(&self.spec.log);
        }
    }
}

/// Whether a pod with these labels is a waypoint's or opted out, i.e. is
/// never captured (the harness does not enrol it).
pub fn never_captured(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.contains_key("gateway.networking.k8s.io/gateway-name")
        || labels.get("istio.io/dataplane-mode").map(String::as_str) == Some("none")
}

/// The `ip netns exec` name-resolution file for a pod netns:
/// `/etc/netns/<netns>/hosts`, removed on drop.
pub struct HostsFile {
    dir: PathBuf,
}

impl HostsFile {
    /// Writes `entries` (ip, names…) as a hosts file for `netns`.
    pub fn write(netns: &str, entries: &[(std::net::IpAddr, Vec<String>)]) -> anyhow::Result<Self> {
        let dir = PathBuf::from("/etc/netns").join(netns);
        std::fs::create_dir_all(&dir)?;
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (ip, names) in entries {
            text += &format!("{ip} {}\n", names.join(" "));
        }
        std::fs::write(dir.join("hosts"), text)?;
        Ok(Self { dir })
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
