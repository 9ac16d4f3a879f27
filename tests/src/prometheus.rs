//! A real Prometheus (Debian's `prometheus`) scraping an agent from inside
//! a node's network namespace; killed and its data removed on drop. It runs
//! in a cgroup leaf under the cluster's cgroup, so a killed test run's
//! Prometheus is reaped by the next run's sweep with everything else.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{anyhow, Context as _};
use mesh_testkit::try_eventually;
use serde_json::Value;

pub struct Prometheus {
    child: Child,
    /// Dropped after the child is stopped (field order).
    _cgroup: crate::cgroup::Cgroup,
    dir: PathBuf,
    netns: PathBuf,
    addr: std::net::SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus in `netns`, scraping `target` (`host:port`) every
    /// second, listening on `127.0.0.1:<port>` there.
    pub fn start(
        netns: &Path,
        cgroup_parent: &Path,
        target: &str,
        port: u16,
        tag: &str,
    ) -> anyhow::Result<Self> {
        Self::start_jobs(
            netns,
            cgroup_parent,
            &[ScrapeJob::new("mesh-agent", &[target])],
            port,
            tag,
        )
    }

    /// Starts Prometheus in `netns`, scraping every job's targets at
    /// `/stats/prometheus` every second (the job name is each series' `job`
    /// label), listening on `127.0.0.1:<port>` there.
    pub fn start_jobs(
        netns: &Path,
        cgroup_parent: &Path,
        jobs: &[ScrapeJob],
        port: u16,
        tag: &str,
    ) -> anyhow::Result<Self> {
        let bin = which::which("prometheus")
            .context("prometheus is not installed (cargo xtask setup installs it)")?;
        let dir = std::env::temp_dir().join(format!("{tag}-prometheus"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(jobs))?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg("--")
            .arg(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting prometheus")?;
        // nsenter execs Prometheus: same pid.
        let cgroup = crate::cgroup::Cgroup::create(cgroup_parent.join("prometheus"))?;
        std::fs::write(cgroup.path.join("cgroup.procs"), child.id().to_string())
            .context("moving prometheus into its cgroup")?;
        Ok(Self {
            child,
            _cgroup: cgroup,
            dir,
            netns: netns.to_path_buf(),
            addr,
        })
    }

    /// Runs an instant query; the `data.result` array.
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let body = crate::netns::http_get_in(&self.netns, self.addr, &path)?;
        let v: Value = serde_json::from_str(&body)?;
        anyhow::ensure!(v["status"] == "success", "query failed: {v}");
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Polls `promql` (at most `timeout`) until its first series' value
    /// satisfies `ok`; returns that value.
    pub fn wait_value(
        &self,
        promql: &str,
        timeout: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> anyhow::Result<f64> {
        try_eventually(&format!("Prometheus query {promql}"), timeout, || {
            let series = self.query(promql).map_err(|e| format!("{e:#}"))?;
            match series
                .first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok())
            {
                Some(v) if ok(v) => Ok(v),
                Some(v) => Err(format!("value {v}")),
                None => Err("no series".to_string()),
            }
        })
        .map_err(|e| {
            let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            anyhow!(
                "{e}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
    }
}

/// One `scrape_configs` entry: a job name and its `host:port` targets.
#[derive(Debug, Clone)]
pub struct ScrapeJob {
    pub name: String,
    pub targets: Vec<String>,
}

impl ScrapeJob {
    pub fn new(name: &str, targets: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// prometheus.yml: a 1 s scrape and evaluation interval, one job each.
fn config_yaml(jobs: &[ScrapeJob]) -> String {
    let mut yaml = String::from(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    for job in jobs {
        let targets: Vec<String> = job.targets.iter().map(|t| format!("'{t}'")).collect();
        yaml.push_str(&format!(
            "- job_name: {}\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: [{}]\n",
            job.name,
            targets.join(", ")
        ));
    }
    yaml
}

/// Percent-encoding for a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        crate::cmd::terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
