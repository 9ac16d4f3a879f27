//! Every setting of the agent, each declared once: its flag, environment
//! variable, TOML key, help and default (see settings.rs). Flags follow
//! the other daemons' spelling for the same setting (`--xds-addr`,
//! `--ca-addr`); older spellings stay as hidden aliases, older TOML keys
//! as serde aliases, and older environment names are read by main.rs
//! ([`super::RENAMED_ENV`]). Durations are Go durations (`90s`, `1h30m`;
//! a plain number is seconds).
use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::ArgAction;
use mesh_admin::duration;

use super::LogFormat;

settings! {
    /// Options every subcommand understands.
    pub struct CommonArgs => CommonSettings {
        /// TOML file with any of the `run` options (snake_case keys); flags and
        /// environment override it.
        #[arg(long, global = true, env = "MESH_AGENT_CONFIG")]
        #[serde(skip)]
        config: PathBuf,
        /// Name of this agent's directory under the bpffs mount; lets several agents
        /// (tests, demos) coexist on one kernel. [default: mesh]
        #[arg(long, global = true, env = "MESH_AGENT_INSTANCE")]
        instance: String = "mesh".into(),
        /// Where the BPF filesystem is (mounted there if it is not yet). [default: /sys/fs/bpf]
        #[arg(long, global = true, env = "MESH_AGENT_BPFFS")]
        bpffs: PathBuf = PathBuf::from("/sys/fs/bpf"),
        /// Log filter in RUST_LOG syntax, e.g. `info,mesh_agent::outbound=debug`.
        /// eBPF-side logs (aya-log) appear under target `mesh_ebpf` at debug. [default: info]
        #[arg(long, global = true, env = "MESH_AGENT_LOG")]
        log: String = "info".into(),
        /// Log line format. [default: text]
        #[arg(long, global = true, env = "MESH_AGENT_LOG_FORMAT")]
        log_format: LogFormat = LogFormat::Text,
    }
}

settings! {
    /// The options of `run` and `install`.
    pub struct RunArgs => RunSettings {
        /// cgroup v2 directory the programs attach to (all pods must live below it).
        /// [default: the cgroup2 mount found in /proc/self/mountinfo]
        #[arg(long, env = "MESH_AGENT_CGROUP_ROOT")]
        cgroup_root: PathBuf,
        /// Node address pods reach the agent on, for IPv4 traffic.
        /// [default: the first global IPv4 address of the agent's network namespace]
        #[arg(long, env = "MESH_AGENT_REDIRECT_IPV4")]
        redirect_ipv4: Ipv4Addr,
        /// Node address pods reach the agent on, for IPv6 traffic. Without it,
        /// IPv6 destinations are not captured (counted as bypass_no_ipv6_agent).
        #[arg(long, env = "MESH_AGENT_REDIRECT_IPV6")]
        redirect_ipv6: Ipv6Addr,
        /// Outbound capture port. [default: 15001]
        #[arg(long, env = "MESH_AGENT_OUTBOUND_PORT")]
        outbound_port: u16 = mesh_common::OUTBOUND_PORT,
        /// Admin endpoint (connections, kernel counters, readiness). [default: 127.0.0.1:15000]
        #[arg(long, env = "MESH_AGENT_ADMIN_ADDR")]
        admin_addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 15000)),
        /// SO_MARK put on the agent's own sockets, which capture skips. [default: 1337]
        #[arg(long, env = "MESH_AGENT_SOCKET_MARK")]
        socket_mark: u32 = mesh_common::AGENT_SOCKET_MARK,
        /// Per-direction pipe size of a proxied connection (splice), bytes. [default: 262144]
        #[arg(long, env = "MESH_AGENT_BUFFER_SIZE")]
        buffer_size: usize = 256 * 1024,
        /// How long a proxied connection's upstream connect (to the
        /// destination, an HBONE gateway, or a local pod behind the inbound
        /// side) may take (`10s`, `500ms`).
        /// [default: 10s]
        #[arg(long, env = "MESH_AGENT_CONNECT_TIMEOUT", value_parser = duration::parse_flag)]
        #[serde(deserialize_with = "duration::de::option")]
        connect_timeout: Duration = Duration::from_secs(10),
        /// Tokio worker threads. [default: 2]
        #[arg(long, env = "MESH_AGENT_WORKER_THREADS")]
        worker_threads: usize = 2,
        /// This node's name, as in the pods' spec.nodeName. [default: the hostname]
        #[arg(long, env = "MESH_AGENT_NODE_NAME")]
        node_name: String,
        /// Control plane xDS endpoint, e.g. http://10.0.0.254:15010 (plaintext, local
        /// dev) or https://mesh-control:15012. Without it the agent runs capture
        /// only: every captured connection is passed through in plaintext.
        #[arg(long, env = "MESH_AGENT_XDS_ADDR", alias = "xds-address")]
        #[serde(alias = "xds_address")]
        xds_addr: String,
        /// CA endpoint for workload certificates. [default: the xDS endpoint]
        #[arg(long, env = "MESH_AGENT_CA_ADDR", alias = "ca-address")]
        #[serde(alias = "ca_address")]
        ca_addr: String,
        /// PEM file with the mesh's root certificate(s): verifies peers' HBONE
        /// certificates and the control plane's TLS. Required with --xds-addr.
        #[arg(long, env = "MESH_AGENT_TRUST_BUNDLE")]
        trust_bundle: PathBuf,
        /// Where inbound HBONE is accepted (this node's address, port 15008).
        /// [default: <redirect-ipv4>:15008]
        #[arg(long, env = "MESH_AGENT_HBONE_ADDR")]
        hbone_addr: SocketAddr,
        /// Lifetime requested for workload certificates (`90s`, `30m`, `24h`);
        /// they are renewed at half-life. [default: 24h]
        #[arg(long, env = "MESH_AGENT_CERT_TTL", value_parser = duration::parse_flag)]
        #[serde(alias = "cert_ttl_seconds", deserialize_with = "duration::de::option")]
        cert_ttl: Duration = Duration::from_secs(24 * 3600),
        /// ServiceAccount token file (a projected token, audience `istio-ca`)
        /// sent as `authorization: Bearer` on the xDS stream and certificate
        /// requests, for a control plane that checks callers with a Kubernetes
        /// TokenReview. Read again for every request (the kubelet rotates it).
        /// [default: send no token]
        #[arg(long, env = "MESH_AGENT_TOKEN_FILE")]
        token_file: PathBuf,
        /// The cluster this node belongs to, as Istio names it: sent as the
        /// `clusterid` gRPC header on the xDS stream and certificate requests
        /// and as node metadata CLUSTER_ID, as ztunnel does (istiod reviews
        /// the token with that cluster's API server). [default: Kubernetes]
        #[arg(long, env = "MESH_AGENT_CLUSTER_ID")]
        cluster_id: String = mesh_xds::client::node_identity::DEFAULT_CLUSTER_ID.into(),
        /// The agent's own pod name (the DaemonSet sets it from the downward
        /// API): part of the xDS node id
        /// `ztunnel~<node ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`
        /// and node metadata NAME. [default: mesh-agent-<node name>]
        #[arg(long, env = "MESH_AGENT_POD_NAME")]
        pod_name: String,
        /// The agent's own pod namespace (node id and node metadata
        /// NAMESPACE). [default: istio-system]
        #[arg(long, env = "MESH_AGENT_POD_NAMESPACE")]
        pod_namespace: String = "istio-system".into(),
        /// Prometheus endpoint (`/metrics`, `/stats/prometheus`): Istio's
        /// istio_tcp_* metrics and the agent's mesh_agent_* health.
        /// [default: 0.0.0.0:15020]
        #[arg(long, env = "MESH_AGENT_METRICS_ADDR")]
        metrics_addr: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 15020)),
        /// Record metrics. `--metrics=false` records nothing and serves no
        /// metrics endpoint (to measure what metrics cost). [default: true]
        #[arg(long, env = "MESH_AGENT_METRICS", action = ArgAction::Set, num_args = 0..=1,
              default_missing_value = "true", value_name = "BOOL")]
        metrics: bool = true,
        /// Readiness endpoint for probes (`GET /healthz/ready`; also on the admin
        /// endpoint). [default: 0.0.0.0:15021]
        #[arg(long, env = "MESH_AGENT_READY_ADDR")]
        ready_addr: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 15021)),
        /// Write one JSON access-log line per finished connection (target
        /// `access`, on stderr). Can be switched at runtime with
        /// `POST /logging?access=off|info`. [default: true]
        #[arg(long, env = "MESH_AGENT_ACCESS_LOG", action = ArgAction::Set, num_args = 0..=1,
              default_missing_value = "true", value_name = "BOOL")]
        access_log: bool = true,
        /// Same-node fast path: once the agent has authorized a (pod,
        /// same-node mesh pod address and port) pair, later `connect()`s
        /// of that pair go straight to the destination in the kernel; the
        /// agent still counts, logs and re-checks them (ARCHITECTURE.md).
        /// `--fast-path=false` carries every connection through the agent.
        /// [default: true]
        #[arg(long, env = "MESH_AGENT_FAST_PATH", action = ArgAction::Set, num_args = 0..=1,
              default_missing_value = "true", value_name = "BOOL")]
        fast_path: bool = true,
        /// On SIGTERM, SIGINT or `POST /quitquitquit`: how long open connections
        /// may run on after the listeners stop accepting (`5s`, `2m`). [default: 5s]
        #[arg(long, env = "MESH_AGENT_DRAIN_TIMEOUT", value_parser = duration::parse_flag)]
        #[serde(alias = "drain_timeout_seconds", deserialize_with = "duration::de::option")]
        drain_timeout: Duration = mesh_admin::drain::DEFAULT_TIMEOUT,
        /// Serve DNS to the node's pods on the redirect addresses, port 15053
        /// (UDP and TCP), when a control plane is configured: A/AAAA for the
        /// Service and ServiceEntry hostnames a pod's namespace sees, every
        /// other query forwarded to --dns-upstream.
        /// [default: true]
        #[arg(long, env = "MESH_AGENT_DNS_PROXY", action = ArgAction::Set, num_args = 0..=1,
              default_missing_value = "true", value_name = "BOOL")]
        dns_proxy: bool = true,
        /// The resolver queries are forwarded to, and ServiceEntry endpoint
        /// names are resolved with (`ip:port`).
        /// [default: the first nameserver of /etc/resolv.conf, port 53]
        #[arg(long, env = "MESH_AGENT_DNS_UPSTREAM")]
        dns_upstream: SocketAddr,
        /// Serve the CNI plugin's API on this Unix socket (e.g.
        /// /var/run/mesh/cni.sock) and enrol pods automatically: on CNI ADD,
        /// and by reconciling recorded pods with the xDS view. Needs
        /// --xds-addr. Unset: pods are enrolled only by `mesh-agent enroll`.
        #[arg(long, env = "MESH_AGENT_CNI_SOCKET")]
        cni_socket: PathBuf,
        /// Directory of the CNI pod records (one JSON file per sandbox).
        /// [default: /var/run/mesh/pods]
        #[arg(long, env = "MESH_AGENT_POD_RECORDS")]
        pod_records: PathBuf = PathBuf::from("/var/run/mesh/pods"),
        /// How long a CNI ADD waits for the pod to appear in the xDS view
        /// before the agent answers 503 (the plugin then fails the ADD and the
        /// runtime retries). [default: 10s]
        #[arg(long, env = "MESH_AGENT_ENROLL_WAIT", value_parser = duration::parse_flag)]
        #[serde(alias = "enroll_wait_seconds", deserialize_with = "duration::de::option")]
        enroll_wait: Duration = Duration::from_secs(10),
        /// Where processes' namespaces are scanned for pods that predate the
        /// CNI plugin. [default: /proc]
        #[arg(long, env = "MESH_AGENT_PROC_ROOT")]
        proc_root: PathBuf = PathBuf::from("/proc"),
        /// Directory of named network namespaces, scanned like --proc-root.
        /// [default: /run/netns]
        #[arg(long, env = "MESH_AGENT_NETNS_DIR")]
        netns_dir: PathBuf = PathBuf::from("/run/netns"),
    }
}
