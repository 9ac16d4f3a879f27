//! Typed agent configuration, read from (highest precedence first) command-line
//! flags, `MESH_AGENT_*` environment variables, a TOML file (`--config`), and
//! built-in defaults. Each setting is declared once, in args.rs; resolve.rs
//! merges the sources and checks the result into an [`AgentConfig`], which
//! tests build directly.
#[macro_use]
mod settings;
mod args;
mod resolve;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{de::Error as _, Deserialize, Deserializer};

pub use mesh_admin::log_control::LogFormat;

pub use self::{
    args::{CommonArgs, CommonSettings, RunArgs, RunSettings},
    resolve::{AgentConfig, MeshConfig},
};

/// Environment variables renamed with their flag: (old, new). main.rs
/// still reads the old name when the new one is unset.
pub const RENAMED_ENV: &[(&str, &str)] = &[
    ("MESH_AGENT_XDS_ADDRESS", "MESH_AGENT_XDS_ADDR"),
    ("MESH_AGENT_CA_ADDRESS", "MESH_AGENT_CA_ADDR"),
];

/// Node agent of the eBPF-assisted mesh.
///
/// Loads the capture programs into the kernel (cgroup connect4/connect6 and
/// sock_ops), pins them under <bpffs>/<instance>/, and proxies every captured
/// connection of an enrolled pod to its original destination. Pods are
/// enrolled by network namespace: `mesh-agent enroll --netns /run/netns/pod`,
/// or automatically with `run --cni-socket`: the `mesh-cni` plugin asks on
/// each pod's CNI ADD, and the agent keeps enrolment equal to the control
/// plane's view (namespace label `istio.io/dataplane-mode=ambient`).
#[derive(Debug, Parser)]
#[command(name = "mesh-agent", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent: load and attach (or reuse pinned) capture programs,
    /// serve the outbound listener and the admin endpoint until SIGTERM, SIGINT
    /// or `POST /quitquitquit`, then drain.
    /// Programs stay attached after exit so a restart loses no enrolment; use
    /// `uninstall` to remove them.
    Run(RunArgs),
    /// Load, attach and pin the capture programs (or keep the pinned ones if
    /// they are current), write the capture configuration, print what was
    /// done as JSON, and exit. `run` does this in a short-lived child process
    /// so the daemon never holds the memory aya needs to parse kernel BTF;
    /// it also suits an init container.
    Install(RunArgs),
    /// Enrol a pod: capture the outbound TCP of its network namespace.
    Enroll(EnrollArgs),
    /// Unenrol a pod: new connections go direct again.
    Unenroll(PodArgs),
    /// Show what is pinned, enrolled and counted in the kernel.
    Status,
    /// Detach the programs and remove every pin of this instance.
    Uninstall,
}

#[derive(Debug, Args)]
pub struct PodArgs {
    /// The pod's network namespace, as a path (/run/netns/NAME, /proc/PID/ns/net).
    #[arg(long, conflicts_with = "pid", required_unless_present = "pid")]
    pub netns: Option<PathBuf>,
    /// Any process id inside the pod's network namespace.
    #[arg(long)]
    pub pid: Option<u32>,
}

impl PodArgs {
    pub fn netns_path(&self) -> PathBuf {
        match (&self.netns, self.pid) {
            (Some(path), _) => path.clone(),
            (None, Some(pid)) => PathBuf::from(format!("/proc/{pid}/ns/net")),
            (None, None) => unreachable!("clap requires --netns or --pid"),
        }
    }
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub pod: PodArgs,
    /// Destination port this pod keeps off the mesh (repeatable).
    #[arg(long = "exclude-port", value_name = "PORT")]
    pub exclude_ports: Vec<u16>,
}

/// Where this agent's kernel objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinConfig {
    pub bpffs: PathBuf,
    pub instance: String,
}

impl PinConfig {
    /// `<bpffs>/<instance>`.
    pub fn dir(&self) -> PathBuf {
        self.bpffs.join(&self.instance)
    }
}

impl settings::FlagValue for LogFormat {
    fn flag_value(&self) -> std::ffi::OsString {
        self.to_possible_value()
            .map(|value| value.get_name().into())
            .unwrap_or_default()
    }
}

/// The TOML file: any key of [`CommonArgs`] (but `config`) or
/// [`RunArgs`], every one optional; an unknown key is an error naming it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileConfig {
    pub common: CommonArgs,
    pub run: RunArgs,
}

impl<'de> Deserialize<'de> for FileConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        let (common, run): (toml::Table, toml::Table) = table
            .into_iter()
            .partition(|(key, _)| CommonArgs::KEYS.contains(&key.as_str()));
        Ok(FileConfig {
            common: CommonArgs::deserialize(toml::Value::Table(common))
                .map_err(D::Error::custom)?,
            run: RunArgs::deserialize(toml::Value::Table(run)).map_err(D::Error::custom)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{field} must be {expected}, got {got}")]
    Invalid {
        field: &'static str,
        expected: &'static str,
        got: String,
    },
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }
}

impl CommonSettings {
    pub fn pins(&self) -> PinConfig {
        PinConfig {
            bpffs: self.bpffs.clone(),
            instance: self.instance.clone(),
        }
    }
}

impl CommonArgs {
    /// Flags and environment over the file over the defaults.
    pub fn merged(&self, file: &FileConfig) -> CommonSettings {
        self.or(&file.common).resolve()
    }
}

#[cfg(test)]
mod tests;
