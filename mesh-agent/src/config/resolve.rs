//! Merging flags/env over the file over the defaults, grouping what only
//! matters together (the mesh side, the CNI side), and checking the result.
use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use super::{CommonArgs, ConfigError, FileConfig, LogFormat, PinConfig, RunArgs, RunSettings};

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
    /// How long a proxied connection's upstream connect may take.
    pub connect_timeout: Duration,
    pub worker_threads: usize,
    /// The mesh side; `None`: capture-only (plaintext passthrough).
    pub mesh: Option<MeshConfig>,
    pub metrics_addr: SocketAddr,
    /// `false`: no metrics recorded, no metrics endpoint.
    pub metrics: bool,
    /// Same-node fast path (capture/fast_path.rs).
    pub fast_path: bool,
    pub ready_addr: SocketAddr,
    /// Access log on at start (the `access` target of the log filter).
    pub access_log: bool,
    /// How long open connections may finish when stopping.
    pub drain_timeout: Duration,
    /// Serve DNS to pods (crate::dns::server) on the redirect address.
    pub dns_proxy: bool,
    /// Where DNS goes upstream; `None` when neither set nor found in
    /// /etc/resolv.conf (names then do not resolve).
    pub dns_upstream: Option<SocketAddr>,
    /// The CNI server and reconciler; `None`: enrolment by CLI only.
    pub cni: Option<crate::cni::CniSettings>,
    /// The merged settings (flags/env over file) this was resolved from:
    /// what a child process is started with.
    pub args: RunArgs,
    /// The merged common settings, likewise.
    pub common_args: CommonArgs,
}

/// Settings that only matter when the agent is fed by a control plane.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub node_name: String,
    pub xds_address: String,
    pub ca_address: String,
    pub trust_bundle: PathBuf,
    pub hbone_addr: Option<SocketAddr>,
    pub cert_ttl: Duration,
    pub token_file: Option<PathBuf>,
    /// Istio cluster name: `clusterid` header and node metadata CLUSTER_ID.
    pub cluster_id: String,
    /// The agent's own pod, as it names itself in its xDS node id.
    pub pod_name: String,
    pub pod_namespace: String,
}

impl AgentConfig {
    /// The port the kernel sends enrolled pods' DNS to, when the agent
    /// serves DNS: `--dns-proxy` and a control plane (the proxy answers
    /// from its view). `None`: pods' DNS is left alone, never redirected
    /// to a port nobody serves.
    pub fn dns_proxy_port(&self) -> Option<u16> {
        (self.dns_proxy && self.mesh.is_some()).then_some(mesh_common::DNS_PROXY_PORT)
    }

    /// Merges flags/env (`common`, `run`) over the file over defaults, and
    /// validates.
    pub fn resolve(
        common: &CommonArgs,
        run: &RunArgs,
        file: &FileConfig,
    ) -> Result<Self, ConfigError> {
        let common_args = CommonArgs {
            config: None,
            ..common.or(&file.common)
        };
        let args = run.or(&file.run);
        let shared = common_args.resolve();
        let set = args.resolve();
        let cfg = Self {
            pins: shared.pins(),
            log: shared.log,
            log_format: shared.log_format,
            mesh: resolve_mesh(&set)?,
            cni: resolve_cni(&set),
            cgroup_root: set.cgroup_root,
            redirect_ipv4: set.redirect_ipv4,
            redirect_ipv6: set.redirect_ipv6,
            outbound_port: set.outbound_port,
            admin_addr: set.admin_addr,
            socket_mark: set.socket_mark,
            buffer_size: set.buffer_size,
            connect_timeout: set.connect_timeout,
            worker_threads: set.worker_threads,
            metrics_addr: set.metrics_addr,
            metrics: set.metrics,
            fast_path: set.fast_path,
            ready_addr: set.ready_addr,
            access_log: set.access_log,
            drain_timeout: set.drain_timeout,
            dns_proxy: set.dns_proxy,
            dns_upstream: set
                .dns_upstream
                .or_else(|| system_nameserver(std::path::Path::new(RESOLV_CONF))),
            args,
            common_args,
        };
        cfg.validate()?;
        Ok(cfg)
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
                "a non-zero port other than the HBONE port (15008)",
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
                "set only together with xds_addr",
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

/// Where the node's resolver is configured.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The first `nameserver` of a resolv.conf, port 53.
pub(crate) fn system_nameserver(path: &std::path::Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(path).ok()?;
    first_nameserver(&text)
}

pub(crate) fn first_nameserver(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "nameserver" {
            return None;
        }
        let ip: std::net::IpAddr = words.next()?.parse().ok()?;
        Some(SocketAddr::new(ip, 53))
    })
}

fn resolve_cni(set: &RunSettings) -> Option<crate::cni::CniSettings> {
    Some(crate::cni::CniSettings {
        socket: set.cni_socket.clone()?,
        records: set.pod_records.clone(),
        enroll_wait: set.enroll_wait,
        proc_root: set.proc_root.clone(),
        netns_dir: set.netns_dir.clone(),
    })
}

fn resolve_mesh(set: &RunSettings) -> Result<Option<MeshConfig>, ConfigError> {
    let Some(xds_address) = set.xds_addr.clone() else {
        return Ok(None);
    };
    let trust_bundle = set
        .trust_bundle
        .clone()
        .ok_or_else(|| ConfigError::Invalid {
            field: "trust_bundle",
            expected: "a PEM file path when xds_addr is set",
            got: "nothing".into(),
        })?;
    let node_name = match set.node_name.clone() {
        Some(name) => name,
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
    };
    let cluster_id = set.cluster_id.clone();
    mesh_xds::client::node_identity::cluster_id_header(&cluster_id).map_err(|_| {
        ConfigError::Invalid {
            field: "cluster_id",
            expected: "a non-empty name of visible ASCII characters",
            got: format!("{cluster_id:?}"),
        }
    })?;
    let pod_name = set
        .pod_name
        .clone()
        .unwrap_or_else(|| format!("mesh-agent-{}", node_name.replace('.', "-")));
    for (field, value) in [
        ("pod_name", &pod_name),
        ("pod_namespace", &set.pod_namespace),
    ] {
        if value.is_empty()
            || value.contains(['~', '.', '/'])
            || value.contains(char::is_whitespace)
        {
            return Err(ConfigError::Invalid {
                field,
                expected: "a Kubernetes name without '~', '.', '/' or spaces",
                got: format!("{value:?}"),
            });
        }
    }
    Ok(Some(MeshConfig {
        cluster_id,
        pod_name,
        pod_namespace: set.pod_namespace.clone(),
        node_name,
        ca_address: set.ca_addr.clone().unwrap_or_else(|| xds_address.clone()),
        xds_address,
        trust_bundle,
        hbone_addr: set.hbone_addr,
        cert_ttl: set.cert_ttl,
        token_file: set.token_file.clone(),
    }))
}
