//! The command line (clap). Every target-taking command resolves its target
//! with [`crate::target`] before any thread starts.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{
    proxy_config::{Direction, Kind},
    render::Output,
};

/// Operator CLI of the eBPF-assisted ambient mesh, in istioctl's idiom.
///
/// Talks to the admin endpoints (127.0.0.1:15000 by default) of the control
/// plane (mesh-control) and of node agents (mesh-agent), and reads an
/// agent's pinned eBPF objects. A TARGET is `host:port`, a bare IP (port
/// 15000), or the name of a network namespace in /run/netns (`ip netns
/// list`): meshctl enters it (root needed) and uses 127.0.0.1:15000 there,
/// which is how loopback-only admin ports of a node are reached.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about, long_about)]
pub struct Cli {
    /// The control plane's admin endpoint (TARGET, see above).
    #[arg(
        long,
        global = true,
        env = "MESHCTL_CONTROL_PLANE",
        default_value = crate::target::DEFAULT_ADMIN,
        value_name = "TARGET"
    )]
    pub control_plane: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Which agents are connected to the control plane and whether each has
    /// the current configuration, per xDS type.
    ///
    /// SYNCED: the last response was ACKed at the current version. STALE:
    /// sent but not ACKed yet, or ACKed an older version. NOT SENT:
    /// subscribed, nothing sent yet. NACKED: the agent rejected the last
    /// response (the reason is printed below the table).
    #[command(alias = "ps")]
    ProxyStatus {
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },

    /// What one agent holds: workloads, services, policies, certificates,
    /// connections — or one waypoint: listeners, routes, clusters,
    /// endpoints — read from its admin endpoint.
    #[command(alias = "pc")]
    ProxyConfig {
        #[arg(value_enum)]
        kind: Kind,

        /// The agent's (or, for listener|route|cluster|endpoint, the
        /// waypoint's) admin endpoint (TARGET, see `meshctl --help`), e.g.
        /// the node's or waypoint pod's network namespace name; or, as
        /// istioctl takes it, a pod `<pod>[.<namespace>]` the control plane
        /// (--control-plane) knows: a waypoint kind reads that pod's own
        /// admin, the others its node's agent, filtered to the pod.
        #[arg(default_value = crate::target::DEFAULT_ADMIN, value_name = "AGENT")]
        agent: String,

        /// Only this namespace.
        #[arg(short, long)]
        namespace: Option<String>,

        /// Only this workload (pod name or a prefix of it, or uid); for
        /// `policy`: the policies that apply to it.
        #[arg(short, long)]
        workload: Option<String>,

        /// Only this IP (workload or service address; either end of a
        /// connection).
        #[arg(short, long)]
        address: Option<String>,

        /// Only this port: of a cluster (`outbound|<port>|…`), a listener's
        /// or an endpoint's address.
        #[arg(long)]
        port: Option<u16>,

        /// Only clusters (and their endpoints) of this direction; a
        /// waypoint's listeners are inbound.
        #[arg(long, value_enum)]
        direction: Option<Direction>,

        /// Only clusters and endpoints of this service host (`reviews`,
        /// `reviews.default` or the full name).
        #[arg(long)]
        fqdn: Option<String>,

        /// table (istioctl's `short`), json or yaml.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },

    /// Opens the control plane's service graph: a live page of who calls
    /// whom, with request rates, error rates, latency percentiles, mTLS
    /// and canary weights against the traffic split actually seen — as
    /// `istioctl dashboard kiali` opens Kiali.
    ///
    /// The page is served by the control plane's admin endpoint
    /// (--control-plane). For a host:port target, prints
    /// `http://<host:port>/graph` and exits. For a network namespace
    /// target (the admin listens on that namespace's loopback), runs a
    /// forwarder on 127.0.0.1:<--port> that carries the page's requests
    /// (GET /graph and /graph/* only) into the namespace, prints
    /// `http://127.0.0.1:<port>/graph` and serves until Ctrl-C.
    ///
    /// Example: `meshctl --control-plane mdemo-net dashboard --browser`.
    #[command(alias = "dash")]
    Dashboard {
        /// Local port of the forwarder.
        #[arg(short, long, default_value_t = 15080)]
        port: u16,

        /// Local address of the forwarder (a loopback address).
        #[arg(long, default_value = "127.0.0.1")]
        address: std::net::IpAddr,

        /// Also open the page in the desktop's browser (xdg-open).
        #[arg(long)]
        browser: bool,

        /// Connections the forwarder serves at once; more are closed.
        #[arg(long, default_value_t = 64, value_name = "N")]
        max_connections: usize,

        /// Seconds a browser connection may stay idle before the forwarder
        /// closes it.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        idle_timeout: u64,
    },

    /// Forwards local ports to a pod's ports, as `kubectl port-forward`:
    /// e.g. `meshctl port-forward istio-ingressgateway 8080:80 8443:443`
    /// makes the ingress gateway answer on http://127.0.0.1:8080 and
    /// https://127.0.0.1:8443 of this host.
    ///
    /// POD is the pod's network namespace (a name in /run/netns, `ip netns
    /// list`; `pod/<name>` works too); entering it needs root. Each
    /// connection to a local port is carried as plain TCP to 127.0.0.1:REMOTE
    /// inside the pod's namespace (the pod's loopback, as kubectl uses), so
    /// TLS and HTTP pass through untouched; a side that stops sending is
    /// passed on as a half-close. Each remote port is tried once at start:
    /// a missing namespace or a port nothing listens on is an error then.
    /// Prints `Forwarding from <address>:<LOCAL> -> <REMOTE>` per forward
    /// and serves until Ctrl-C. Connections beyond --max-connections are
    /// closed on accept; one that moves no byte for --idle-timeout is
    /// closed.
    #[command(alias = "pf")]
    PortForward {
        /// The pod: its network namespace name (or pod/<name>).
        pod: String,

        /// `LOCAL:REMOTE` (8080:80), `PORT` (the same port both sides) or
        /// `:REMOTE` (any free local port; the printed line says which).
        #[arg(value_name = "[LOCAL:]REMOTE", required = true, value_parser = crate::port_forward::PortSpec::parse)]
        ports: Vec<crate::port_forward::PortSpec>,

        /// Local address(es) to listen on; repeatable or comma-separated.
        /// Loopback only, unless --allow-non-loopback.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
        address: Vec<std::net::IpAddr>,

        /// Allow a non-loopback --address (e.g. 0.0.0.0), which makes the
        /// pod's ports reachable from other hosts.
        #[arg(long)]
        allow_non_loopback: bool,

        /// Connections forwarded at once (all ports); more are closed.
        #[arg(long, default_value_t = 256, value_name = "N")]
        max_connections: usize,

        /// Seconds a connection may carry no bytes either way before it is
        /// closed.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        idle_timeout: u64,
    },

    /// Shows or changes an agent's (or the control plane's) log levels at
    /// runtime, like `istioctl proxy-config log`. Without options it prints
    /// the current filter. The access log is the module `access`
    /// (`--module access=off` switches it off).
    Log {
        /// The admin endpoint (TARGET, see `meshctl --help`), e.g. a node's
        /// network namespace name.
        #[arg(default_value = crate::target::DEFAULT_ADMIN, value_name = "TARGET")]
        target: String,

        /// New default level: trace, debug, info, warn, error, off.
        #[arg(long)]
        level: Option<String>,

        /// One module's level, e.g. `mesh_agent::policy=debug`; repeatable.
        #[arg(long = "module", value_name = "MODULE=LEVEL")]
        modules: Vec<String>,
    },

    /// Validates Istio configuration and explains problems: invalid
    /// resources (naming the field), unknown hosts, subsets no
    /// DestinationRule defines, policies that cannot take effect at L4, and
    /// selectors that match nothing. Reads DIR, or with --live the
    /// configuration the control plane is serving. Exits 1 when any Error
    /// is found.
    Analyze {
        /// A directory of Istio/Kubernetes YAML (what mesh-control
        /// --config-dir reads).
        #[arg(value_name = "DIR", required_unless_present = "live")]
        dir: Option<PathBuf>,

        /// Analyze the control plane's live configuration instead
        /// (--control-plane).
        #[arg(long, conflicts_with = "dir")]
        live: bool,

        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },

    /// Experimental commands, as istioctl's `x`.
    #[command(alias = "x")]
    Experimental {
        #[command(subcommand)]
        command: Experimental,
    },

    /// The eBPF programs, links and maps an agent instance has pinned, with
    /// what each does and how full each map is. Reads bpffs directly (root
    /// needed); the agent need not be running.
    Bpf {
        /// The agent's --instance.
        #[arg(long, default_value = "mesh")]
        instance: String,

        /// Where bpffs is mounted (the agent's --bpffs).
        #[arg(long, default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,

        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum Experimental {
    /// What the mesh does with one resource.
    Describe {
        #[command(subcommand)]
        what: DescribeWhat,
    },
}

#[derive(Debug, Subcommand)]
pub enum DescribeWhat {
    /// One pod: its workload (identity, node, mesh, waypoint), the
    /// Services selecting it, the VirtualServices and DestinationRules its
    /// namespace sees for them, the AuthorizationPolicies applying to it
    /// and its PeerAuthentication mode — from one read of the control
    /// plane's /config_dump (--control-plane).
    Pod {
        /// `<pod>` or `<pod>.<namespace>`.
        pod: String,

        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}
