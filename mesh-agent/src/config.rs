//! Typed agent configuration, read from (highest precedence first) command-line
//! flags, `MESH_AGENT_*` environment variables, a TOML file (`--config`), and
//! built-in defaults. Tests build [`AgentConfig`] directly.
use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

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

/// Options every subcommand understands.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// TOML file with any of the `run` options (snake_case keys); flags and
    /// environment override it.
    #[arg(long, global = true, env = "MESH_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Name of this agent's directory under the bpffs mount; lets several agents
    /// (tests, demos) coexist on one kernel. [default: mesh]
    #[arg(long, global = true, env = "MESH_AGENT_INSTANCE")]
    pub instance: Option<String>,
    /// Where the BPF filesystem is (mounted there if it is not yet). [default: /sys/fs/bpf]
    #[arg(long, global = true, env = "MESH_AGENT_BPFFS")]
    pub bpffs: Option<PathBuf>,
    /// Log filter in RUST_LOG syntax, e.g. `info,mesh_agent::outbound=debug`.
    /// eBPF-side logs (aya-log) appear under target `mesh_ebpf` at debug. [default: info]
    #[arg(long, global = true, env = "MESH_AGENT_LOG")]
    pub log: Option<String>,
    /// Log line format. [default: text]
    #[arg(long, global = true, env = "MESH_AGENT_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent: load and attach (or reuse pinned) capture programs,
    /// serve the outbound listener and the admin endpoint until SIGTERM/SIGINT.
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

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// cgroup v2 directory the programs attach to (all pods must live below it).
    /// [default: the cgroup2 mount found in /proc/self/mountinfo]
    #[arg(long, env = "MESH_AGENT_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// Node address pods reach the agent on, for IPv4 traffic.
    /// [default: the first global IPv4 address of the agent's network namespace]
    #[arg(long, env = "MESH_AGENT_REDIRECT_IPV4")]
    pub redirect_ipv4: Option<Ipv4Addr>,
    /// Node address pods reach the agent on, for IPv6 traffic. Without it,
    /// IPv6 destinations are not captured (counted as bypass_no_ipv6_agent).
    #[arg(long, env = "MESH_AGENT_REDIRECT_IPV6")]
    pub redirect_ipv6: Option<Ipv6Addr>,
    /// Outbound capture port. [default: 15001]
    #[arg(long, env = "MESH_AGENT_OUTBOUND_PORT")]
    pub outbound_port: Option<u16>,
    /// Admin endpoint (connections, kernel counters, readiness). [default: 127.0.0.1:15000]
    #[arg(long, env = "MESH_AGENT_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// SO_MARK put on the agent's own sockets, which capture skips. [default: 1337]
    #[arg(long, env = "MESH_AGENT_SOCKET_MARK")]
    pub socket_mark: Option<u32>,
    /// Per-direction pipe size of a proxied connection (splice), bytes. [default: 262144]
    #[arg(long, env = "MESH_AGENT_BUFFER_SIZE")]
    pub buffer_size: Option<usize>,
    /// Tokio worker threads. [default: 2]
    #[arg(long, env = "MESH_AGENT_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// This node's name, as in the pods' spec.nodeName. [default: the hostname]
    #[arg(long, env = "MESH_AGENT_NODE_NAME")]
    pub node_name: Option<String>,
    /// Control plane xDS endpoint, e.g. http://10.0.0.254:15010 (plaintext, local
    /// dev) or https://mesh-control:15012. Without it the agent runs capture
    /// only: every captured connection is passed through in plaintext.
    #[arg(long, env = "MESH_AGENT_XDS_ADDRESS")]
    pub xds_address: Option<String>,
    /// CA endpoint for workload certificates. [default: the xDS endpoint]
    #[arg(long, env = "MESH_AGENT_CA_ADDRESS")]
    pub ca_address: Option<String>,
    /// PEM file with the mesh's root certificate(s): verifies peers' HBONE
    /// certificates and the control plane's TLS. Required with --xds-address.
    #[arg(long, env = "MESH_AGENT_TRUST_BUNDLE")]
    pub trust_bundle: Option<PathBuf>,
    /// Where inbound HBONE is accepted (this node's address, port 15008).
    /// [default: <redirect-ipv4>:15008]
    #[arg(long, env = "MESH_AGENT_HBONE_ADDR")]
    pub hbone_addr: Option<SocketAddr>,
    /// Lifetime requested for workload certificates (`90s`, `30m`, `24h`);
    /// they are renewed at half-life. [default: 24h]
    #[arg(long, env = "MESH_AGENT_CERT_TTL", value_parser = parse_duration)]
    pub cert_ttl: Option<std::time::Duration>,
    /// ServiceAccount token file (a projected token, audience `istio-ca`)
    /// sent as `authorization: Bearer` on the xDS stream and certificate
    /// requests, for a control plane that checks callers with a Kubernetes
    /// TokenReview. Read again for every request (the kubelet rotates it).
    /// [default: send no token]
    #[arg(long, env = "MESH_AGENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Prometheus endpoint (`/metrics`, `/stats/prometheus`): Istio's
    /// istio_tcp_* metrics and the agent's mesh_agent_* health.
    /// [default: 0.0.0.0:15020]
    #[arg(long, env = "MESH_AGENT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Record metrics. `--metrics=false` records nothing and serves no
    /// metrics endpoint (to measure what metrics cost). [default: true]
    #[arg(long, env = "MESH_AGENT_METRICS", action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub metrics: Option<bool>,
    /// Readiness endpoint for probes (`GET /healthz/ready`; also on the admin
    /// endpoint). [default: 0.0.0.0:15021]
    #[arg(long, env = "MESH_AGENT_READY_ADDR")]
    pub ready_addr: Option<SocketAddr>,
    /// Write one JSON access-log line per finished connection (target
    /// `access`, on stderr). Can be switched at runtime with
    /// `POST /logging?access=off|info`. [default: true]
    #[arg(long, env = "MESH_AGENT_ACCESS_LOG", action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL")]
    pub access_log: Option<bool>,
    /// On SIGTERM, SIGINT or `POST /quitquitquit`: how long open connections
    /// may run on after the listeners stop accepting (`5s`, `2m`). [default: 5s]
    #[arg(long, env = "MESH_AGENT_DRAIN_TIMEOUT", value_parser = parse_duration)]
    pub drain_timeout: Option<std::time::Duration>,
    /// Serve the CNI plugin's API on this Unix socket (e.g.
    /// /var/run/mesh/cni.sock) and enrol pods automatically: on CNI ADD,
    /// and by reconciling recorded pods with the xDS view. Needs
    /// --xds-address. Unset: pods are enrolled only by `mesh-agent enroll`.
    #[arg(long, env = "MESH_AGENT_CNI_SOCKET")]
    pub cni_socket: Option<PathBuf>,
    /// Directory of the CNI pod records (one JSON file per sandbox).
    /// [default: /var/run/mesh/pods]
    #[arg(long, env = "MESH_AGENT_POD_RECORDS")]
    pub pod_records: Option<PathBuf>,
    /// How long a CNI ADD waits for the pod to appear in the xDS view
    /// before the agent answers 503 (the plugin then fails the ADD and the
    /// runtime retries). [default: 10s]
    #[arg(long, env = "MESH_AGENT_ENROLL_WAIT", value_parser = parse_duration)]
    pub enroll_wait: Option<std::time::Duration>,
    /// Where processes' namespaces are scanned for pods that predate the
    /// CNI plugin. [default: /proc]
    #[arg(long, env = "MESH_AGENT_PROC_ROOT")]
    pub proc_root: Option<PathBuf>,
    /// Directory of named network namespaces, scanned like --proc-root.
    /// [default: /run/netns]
    #[arg(long, env = "MESH_AGENT_NETNS_DIR")]
    pub netns_dir: Option<PathBuf>,
}

/// `90s`, `30m`, `24h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 24h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use s, m or h)")),
    };
    Ok(std::time::Duration::from_secs(secs))
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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

/// Everything `mesh-agent run` needs, fully resolved.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub pins: PinConfig,
    pub log: String,
    pub log_format: LogFormat,
    pub cgroup_root: Option<PathBuf>,
    pub redirect_ipv4: Option<Ipv4Addr>,
    pub redirect_ipv6: Option<Ipv6Addr>,
    pub outbound_port: u16,
    pub admin_addr: SocketAddr,
    pub socket_mark: u32,
    pub buffer_size: usize,
    pub worker_threads: usize,
    /// The mesh side; `None`: capture-only (plaintext passthrough).
    pub mesh: Option<MeshConfig>,
    pub metrics_addr: SocketAddr,
    /// `false`: no metrics recorded, no metrics endpoint.
    pub metrics: bool,
    pub ready_addr: SocketAddr,
    /// Access log on at start (the `access` target of the log filter).
    pub access_log: bool,
    /// How long open connections may finish when stopping.
    pub drain_timeout: std::time::Duration,
    /// The CNI server and reconciler; `None`: enrolment by CLI only.
    pub cni: Option<crate::cni::CniSettings>,
}

/// Settings that only matter when the agent is fed by a control plane.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub node_name: String,
    pub xds_address: String,
    pub ca_address: String,
    pub trust_bundle: PathBuf,
    pub hbone_addr: Option<SocketAddr>,
    pub cert_ttl: std::time::Duration,
    pub token_file: Option<PathBuf>,
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub instance: Option<String>,
    pub bpffs: Option<PathBuf>,
    pub log: Option<String>,
    pub log_format: Option<LogFormat>,
    pub cgroup_root: Option<PathBuf>,
    pub redirect_ipv4: Option<Ipv4Addr>,
    pub redirect_ipv6: Option<Ipv6Addr>,
    pub outbound_port: Option<u16>,
    pub admin_addr: Option<SocketAddr>,
    pub socket_mark: Option<u32>,
    pub buffer_size: Option<usize>,
    pub worker_threads: Option<usize>,
    pub node_name: Option<String>,
    pub xds_address: Option<String>,
    pub ca_address: Option<String>,
    pub trust_bundle: Option<PathBuf>,
    pub hbone_addr: Option<SocketAddr>,
    pub cert_ttl_seconds: Option<u64>,
    pub token_file: Option<PathBuf>,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics: Option<bool>,
    pub ready_addr: Option<SocketAddr>,
    pub access_log: Option<bool>,
    pub drain_timeout_seconds: Option<u64>,
    pub cni_socket: Option<PathBuf>,
    pub pod_records: Option<PathBuf>,
    pub enroll_wait_seconds: Option<u64>,
    pub proc_root: Option<PathBuf>,
    pub netns_dir: Option<PathBuf>,
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

/// Log settings after merging flags, env and file.
pub fn log_settings(common: &CommonArgs, file: &FileConfig) -> (String, LogFormat) {
    let filter = common
        .log
        .clone()
        .or_else(|| file.log.clone())
        .unwrap_or_else(|| "info".into());
    let format = common.log_format.or(file.log_format).unwrap_or_default();
    (filter, format)
}

pub fn pin_config(common: &CommonArgs, file: &FileConfig) -> PinConfig {
    PinConfig {
        bpffs: common
            .bpffs
            .clone()
            .or_else(|| file.bpffs.clone())
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf")),
        instance: common
            .instance
            .clone()
            .or_else(|| file.instance.clone())
            .unwrap_or_else(|| "mesh".into()),
    }
}

impl AgentConfig {
    /// Merges flags/env (`run`) over the file over defaults, and validates.
    pub fn resolve(
        common: &CommonArgs,
        run: &RunArgs,
        file: &FileConfig,
    ) -> Result<Self, ConfigError> {
        let (log, log_format) = log_settings(common, file);
        let cfg = Self {
            pins: pin_config(common, file),
            log,
            log_format,
            cgroup_root: run.cgroup_root.clone().or_else(|| file.cgroup_root.clone()),
            redirect_ipv4: run.redirect_ipv4.or(file.redirect_ipv4),
            redirect_ipv6: run.redirect_ipv6.or(file.redirect_ipv6),
            outbound_port: run.outbound_port.or(file.outbound_port).unwrap_or(15001),
            admin_addr: run
                .admin_addr
                .or(file.admin_addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 15000))),
            socket_mark: run
                .socket_mark
                .or(file.socket_mark)
                .unwrap_or(mesh_common::AGENT_SOCKET_MARK),
            buffer_size: run.buffer_size.or(file.buffer_size).unwrap_or(256 * 1024),
            worker_threads: run.worker_threads.or(file.worker_threads).unwrap_or(2),
            mesh: Self::resolve_mesh(run, file)?,
            metrics_addr: run
                .metrics_addr
                .or(file.metrics_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 15020))),
            metrics: run.metrics.or(file.metrics).unwrap_or(true),
            ready_addr: run
                .ready_addr
                .or(file.ready_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 15021))),
            access_log: run.access_log.or(file.access_log).unwrap_or(true),
            drain_timeout: run
                .drain_timeout
                .or(file
                    .drain_timeout_seconds
                    .map(std::time::Duration::from_secs))
                .unwrap_or(std::time::Duration::from_secs(5)),
            cni: Self::resolve_cni(run, file),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_cni(run: &RunArgs, file: &FileConfig) -> Option<crate::cni::CniSettings> {
        let socket = run.cni_socket.clone().or_else(|| file.cni_socket.clone())?;
        Some(crate::cni::CniSettings {
            socket,
            records: run
                .pod_records
                .clone()
                .or_else(|| file.pod_records.clone())
                .unwrap_or_else(|| PathBuf::from("/var/run/mesh/pods")),
            enroll_wait: run
                .enroll_wait
                .or(file.enroll_wait_seconds.map(std::time::Duration::from_secs))
                .unwrap_or(std::time::Duration::from_secs(10)),
            proc_root: run
                .proc_root
                .clone()
                .or_else(|| file.proc_root.clone())
                .unwrap_or_else(|| PathBuf::from("/proc")),
            netns_dir: run
                .netns_dir
                .clone()
                .or_else(|| file.netns_dir.clone())
                .unwrap_or_else(|| PathBuf::from("/run/netns")),
        })
    }

    fn resolve_mesh(run: &RunArgs, file: &FileConfig) -> Result<Option<MeshConfig>, ConfigError> {
        let Some(xds_address) = run.xds_address.clone().or_else(|| file.xds_address.clone()) else {
            return Ok(None);
        };
        let trust_bundle = run
            .trust_bundle
            .clone()
            .or_else(|| file.trust_bundle.clone())
            .ok_or_else(|| ConfigError::Invalid {
                field: "trust_bundle",
                expected: "a PEM file path when xds_address is set",
                got: "nothing".into(),
            })?;
        let node_name = match run.node_name.clone().or_else(|| file.node_name.clone()) {
            Some(name) => name,
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
        };
        let cert_ttl = run
            .cert_ttl
            .or(file.cert_ttl_seconds.map(std::time::Duration::from_secs))
            .unwrap_or(std::time::Duration::from_secs(24 * 3600));
        Ok(Some(MeshConfig {
            node_name,
            ca_address: run
                .ca_address
                .clone()
                .or_else(|| file.ca_address.clone())
                .unwrap_or_else(|| xds_address.clone()),
            xds_address,
            trust_bundle,
            hbone_addr: run.hbone_addr.or(file.hbone_addr),
            cert_ttl,
            token_file: run.token_file.clone().or_else(|| file.token_file.clone()),
        }))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, expected, got: String| ConfigError::Invalid {
            field,
            expected,
            got,
        };
        if self.outbound_port == 0 || self.outbound_port == mesh_common::HBONE_PORT {
            return Err(invalid(
                "outbound_port",
                "a non-zero port other than 15008",
                self.outbound_port.to_string(),
            ));
        }
        if !(4096..=16 << 20).contains(&self.buffer_size) {
            return Err(invalid(
                "buffer_size",
                "between 4096 and 16777216",
                self.buffer_size.to_string(),
            ));
        }
        if !(1..=64).contains(&self.worker_threads) {
            return Err(invalid(
                "worker_threads",
                "between 1 and 64",
                self.worker_threads.to_string(),
            ));
        }
        if self.cni.is_some() && self.mesh.is_none() {
            // Enrolment is decided from the xDS view.
            return Err(invalid(
                "cni_socket",
                "set only together with xds_address",
                "a socket without a control plane".into(),
            ));
        }
        if self.pins.instance.is_empty() || self.pins.instance.contains('/') {
            return Err(invalid(
                "instance",
                "a non-empty name without '/'",
                self.pins.instance.clone(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
