//! The container runtime's side of the CNI spec, for tests: runs a
//! conflist's plugins for a sandbox the way containerd does (libcni):
//! the loopback plugin alone for `lo`, then every plugin of the list in
//! order for ADD, each given the list's `name` and `cniVersion` and the
//! previous plugin's result as `prevResult`; CHECK in order and DEL in
//! reverse order, both with the cached ADD result as `prevResult`. Plugins
//! run in the node's network namespace (they set up the host side there),
//! with CNI_NETNS naming the pod's.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};
use mesh_testkit::{try_eventually, Attempt};
use serde_json::{json, Value};

/// Where Debian's containernetworking-plugins live.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// One plugin run: its exit status and what it printed.
#[derive(Debug, Clone)]
pub struct PluginRun {
    pub plugin: String,
    pub success: bool,
    pub stdout: Option<Value>,
    pub stderr: String,
}

/// A failed chain step (the plugin's CNI error is in `run.stdout`).
#[derive(Debug, thiserror::Error)]
#[error("CNI plugin {} failed: {:?} {}", run.plugin, run.stdout, run.stderr)]
pub struct ChainError {
    pub run: PluginRun,
}

/// A pod sandbox as the runtime describes it to plugins.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub container_id: String,
    pub netns: PathBuf,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Sandbox {
    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.container_id, self.uid
        )
    }
}

pub struct Runtime {
    pub conflist: Value,
    /// Directories searched for plugin binaries (CNI_PATH).
    pub cni_path: Vec<PathBuf>,
    /// Network namespace the plugins run in (the node's).
    pub node_netns: PathBuf,
}

impl Runtime {
    fn find(&self, plugin: &str) -> anyhow::Result<PathBuf> {
        self.cni_path
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| p.exists())
            .with_context(|| format!("CNI plugin {plugin} not found in {:?}", self.cni_path))
    }

    /// Runs one plugin binary, bounded to 60 s.
    pub fn invoke(
        &self,
        plugin: &str,
        command: &str,
        config: &Value,
        sandbox: Option<&Sandbox>,
        ifname: &str,
    ) -> anyhow::Result<PluginRun> {
        let bin = self.find(plugin)?;
        let path = std::env::join_paths(&self.cni_path)?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node_netns.display()))
            .arg("--")
            .arg(&bin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", path)
            .env("CNI_IFNAME", ifname);
        if let Some(sb) = sandbox {
            cmd.env("CNI_CONTAINERID", &sb.container_id)
                .env("CNI_NETNS", &sb.netns)
                .env("CNI_ARGS", sb.cni_args());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting CNI plugin {}", bin.display()))?;
        child
            .stdin
            .take()
            .context("no stdin")?
            .write_all(config.to_string().as_bytes())?;
        let what = format!("CNI plugin {plugin} {command} to finish");
        let finished = try_eventually(&what, Duration::from_secs(60), || match child.try_wait() {
            Ok(Some(_)) => Attempt::Done(()),
            Ok(None) => Attempt::Pending("running".into()),
            Err(e) => Attempt::GiveUp(e.to_string()),
        });
        if let Err(e) = finished {
            if !e.gave_up {
                let _ = child.kill();
                let _ = child.wait();
            }
            bail!("{e}");
        }
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(PluginRun {
            plugin: plugin.to_string(),
            success: out.status.success(),
            stdout: serde_json::from_str(text.trim()).ok(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn version(&self) -> &str {
        self.conflist["cniVersion"].as_str().unwrap_or("1.0.0")
    }

    fn plugins(&self) -> Vec<Value> {
        self.conflist["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The config a plugin of the list receives.
    fn plugin_config(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["cniVersion"] = json!(self.version());
        conf["name"] = self.conflist["name"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    fn loopback(&self, command: &str, sandbox: &Sandbox) -> anyhow::Result<()> {
        let conf =
            json!({"cniVersion": self.version(), "name": "cni-loopback", "type": "loopback"});
        let run = self.invoke("loopback", command, &conf, Some(sandbox), "lo")?;
        if !run.success {
            return Err(ChainError { run }.into());
        }
        Ok(())
    }

    /// ADD: loopback, then the chain. The final result, or the failing step.
    pub fn add(&self, sandbox: &Sandbox) -> anyhow::Result<Value> {
        self.loopback("ADD", sandbox)?;
        let mut prev: Option<Value> = None;
        for plugin in self.plugins() {
            let kind = plugin["type"].as_str().context("plugin without type")?;
            let conf = self.plugin_config(&plugin, prev.as_ref());
            let run = self.invoke(kind, "ADD", &conf, Some(sandbox), "eth0")?;
            if !run.success {
                return Err(ChainError { run }.into());
            }
            prev = Some(run.stdout.clone().context("ADD printed no result")?);
        }
        prev.context("empty conflist")
    }

    /// CHECK: every plugin in order with the cached result.
    pub fn check(&self, sandbox: &Sandbox, result: &Value) -> anyhow::Result<()> {
        for plugin in self.plugins() {
            let kind = plugin["type"].as_str().context("plugin without type")?;
            let conf = self.plugin_config(&plugin, Some(result));
            let run = self.invoke(kind, "CHECK", &conf, Some(sandbox), "eth0")?;
            if !run.success {
                return Err(ChainError { run }.into());
            }
        }
        Ok(())
    }

    /// DEL: reverse order, then loopback; every plugin runs even if one
    /// fails (as runtimes do); the first failure is returned.
    pub fn del(&self, sandbox: &Sandbox, result: Option<&Value>) -> anyhow::Result<()> {
        let mut first: Option<anyhow::Error> = None;
        for plugin in self.plugins().iter().rev() {
            let kind = plugin["type"].as_str().context("plugin without type")?;
            let conf = self.plugin_config(plugin, result);
            match self.invoke(kind, "DEL", &conf, Some(sandbox), "eth0") {
                Ok(run) if run.success => {}
                Ok(run) => {
                    first.get_or_insert_with(|| ChainError { run }.into());
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        if let Err(e) = self.loopback("DEL", sandbox) {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }

    /// VERSION of one plugin.
    pub fn plugin_version(&self, plugin: &str) -> anyhow::Result<Value> {
        let conf = json!({"cniVersion": self.version()});
        let run = self.invoke(plugin, "VERSION", &conf, None, "")?;
        anyhow::ensure!(run.success, "VERSION failed: {run:?}");
        run.stdout.context("VERSION printed nothing")
    }
}

/// The pod's first address in a CNI result (prefix length dropped).
pub fn result_ip(result: &Value) -> Option<std::net::Ipv4Addr> {
    result["ips"]
        .as_array()?
        .iter()
        .find_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
}

/// The directory holding `mesh-cni` (next to the other binaries).
pub fn mesh_cni_dir(agent_bin: &Path) -> PathBuf {
    agent_bin.parent().unwrap_or(Path::new(".")).to_path_buf()
}
