//! Typed configuration of the `mesh-control` binary, read from flags and
//! `MESH_CONTROL_*` environment variables (flags win). Durations are Go
//! durations (`1h30m`, `250ms`; a plain number is seconds), as every mesh
//! daemon reads them (`mesh_admin::duration`). Tests build
//! [`ControlConfig`] directly (see [`ControlConfig::for_dirs`]).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use mesh_admin::duration;
pub use mesh_admin::log_control::LogFormat;

/// Control plane of the eBPF-assisted ambient mesh.
///
/// Reads Kubernetes / Istio objects (Namespace, Pod, Service, Node,
/// EndpointSlice, PeerAuthentication, AuthorizationPolicy, VirtualService,
/// DestinationRule, Gateway API waypoints; other Istio kinds are kept and
/// checked by `meshctl analyze`) from a directory, reloaded on change
/// (--source directory), or by watching a Kubernetes API server
/// (--source kubernetes; rejected resources get a Warning event and an
/// Accepted=False status condition, the rest keeps serving); serves
/// Delta ADS (Istio's workload-discovery types for agents; Envoy listeners,
/// routes, clusters and endpoints for waypoints) and Istio's CA service,
/// plaintext on
/// --xds-addr and over TLS on --xds-tls-addr. The mesh CA root is kept in
/// --ca-dir (generated on first start) and its certificate written to
/// <ca-dir>/root-cert.pem as the agents' trust bundle. An admin endpoint
/// (--admin-addr) shows who is connected and in sync, the served state,
/// the service graph (/graph: live request rates, errors, latency, mTLS
/// and canary splits, from --prometheus-url or from scraping the proxies'
/// metrics), and changes the log level at runtime.
#[derive(Debug, Clone, Parser)]
#[command(name = "mesh-control", version, about, long_about)]
pub struct ControlConfig {
    /// Directory of *.yaml / *.yml files, each holding any number of
    /// Kubernetes/Istio documents. Read at start (a missing directory or
    /// invalid content is a startup error) and polled for changes; an
    /// invalid change is rejected whole and the last good state kept.
    /// Required with --source directory, ignored with kubernetes.
    #[arg(long, env = "MESH_CONTROL_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Where the mesh configuration comes from: a directory of YAML files
    /// (--config-dir) or the Kubernetes API server (--kubeconfig).
    #[arg(long, env = "MESH_CONTROL_SOURCE", value_enum, default_value_t = SourceKind::Directory)]
    pub source: SourceKind,

    /// Kubeconfig file for the Kubernetes source and token reviews.
    /// Default: the in-cluster service account, else $KUBECONFIG or
    /// ~/.kube/config. Plain http:// servers are accepted.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// How long every watched kind gets to complete its first list before
    /// startup fails, naming the kinds that did not (Kubernetes source).
    #[arg(long, env = "MESH_CONTROL_KUBE_LIST_TIMEOUT", default_value = "30s", value_parser = duration::parse_flag)]
    pub kube_list_timeout: Duration,

    /// Authenticate xDS streams and certificate requests by their
    /// `authorization: Bearer <ServiceAccount token>` metadata (TokenReview),
    /// so a pod can only obtain its own identity's certificate.
    /// Default: none with --source directory, kubernetes with --source
    /// kubernetes. Without authentication anyone who reaches --xds-addr or
    /// --xds-tls-addr obtains a certificate for any identity, so a
    /// non-loopback address then needs `--authenticate none` given
    /// explicitly (startup fails otherwise, and warns when it is given).
    #[arg(long, env = "MESH_CONTROL_AUTHENTICATE", value_enum)]
    pub authenticate: Option<AuthMode>,

    /// Audience the callers' tokens must be issued for.
    #[arg(long, env = "MESH_CONTROL_TOKEN_AUDIENCE", default_value = crate::authn::DEFAULT_AUDIENCE)]
    pub token_audience: String,

    /// Service accounts (NAMESPACE/NAME, repeatable or comma-separated)
    /// trusted as node agents, as istiod's CA_TRUSTED_NODE_ACCOUNTS: our
    /// agent's, and `istio-system/ztunnel` to serve Istio's ztunnel. They
    /// may obtain certificates for the pods scheduled on their own node
    /// (the node their token is bound to), asked with or without Istio's
    /// `ImpersonatedIdentity`; every other caller only its own identity.
    /// `--node-agent-account` is the older spelling.
    #[arg(
        long = "ca-trusted-node-accounts",
        alias = "node-agent-account",
        env = "MESH_CONTROL_CA_TRUSTED_NODE_ACCOUNTS",
        value_delimiter = ',',
        value_name = "NS/SA",
        default_value = crate::authn::DEFAULT_NODE_AGENT,
        value_parser = crate::authn::parse_account
    )]
    pub node_agent_accounts: Vec<(String, String)>,

    /// Istio cluster name: workloads' `cluster_id`, and the only cluster a
    /// caller's `clusterid` gRPC header (sent by ztunnel and our agent) may
    /// name when callers are authenticated (as istiod without remote
    /// clusters).
    #[arg(long, env = "MESH_CONTROL_CLUSTER_ID", default_value = mesh_xds::client::node_identity::DEFAULT_CLUSTER_ID)]
    pub cluster_id: String,

    /// SPIFFE trust domain of workload identities
    /// (spiffe://<trust-domain>/ns/<ns>/sa/<sa>); the CA signs only these.
    #[arg(
        long,
        env = "MESH_CONTROL_TRUST_DOMAIN",
        default_value = "cluster.local"
    )]
    pub trust_domain: String,

    /// Istio root namespace: a PeerAuthentication there without a selector
    /// applies mesh-wide.
    #[arg(
        long,
        env = "MESH_CONTROL_ROOT_NAMESPACE",
        default_value = "istio-system"
    )]
    pub root_namespace: String,

    /// Cluster DNS domain: services are <name>.<namespace>.svc.<domain>.
    #[arg(
        long,
        env = "MESH_CONTROL_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,

    /// Directory of the mesh CA: ca-cert.pem and ca-key.pem (mode 0600) are
    /// loaded from it, or generated and saved there (directory created, mode
    /// 0700) if both are absent, so a restart keeps the same root.
    /// root-cert.pem (the trust bundle for agents) is (re)written at start.
    #[arg(long, env = "MESH_CONTROL_CA_DIR", value_name = "DIR")]
    pub ca_dir: PathBuf,

    /// Lifetime of a newly generated CA root (87600h: ten years).
    #[arg(long, env = "MESH_CONTROL_ROOT_TTL", default_value = "87600h", value_parser = duration::parse_flag)]
    pub root_ttl: Duration,

    /// Workload certificate lifetime when a request names none (30s, 10m,
    /// 1h, …). Requests are clamped to 10s … 24h.
    #[arg(long, env = "MESH_CONTROL_CERT_TTL", default_value = "1h", value_parser = duration::parse_flag)]
    pub cert_ttl: Duration,

    /// Lifetime of the control plane's own serving certificate on
    /// --xds-tls-addr; renewed at half-life.
    #[arg(long, env = "MESH_CONTROL_SERVER_CERT_TTL", default_value = "24h", value_parser = duration::parse_flag)]
    pub server_cert_ttl: Duration,

    /// Extra names for the serving certificate (DNS names or IP addresses,
    /// repeatable or comma-separated). Always included:
    /// mesh-control.<root-namespace>.svc[.<cluster-domain>], localhost,
    /// 127.0.0.1, ::1 and the --xds-tls-addr IP unless it is unspecified.
    #[arg(
        long = "server-san",
        env = "MESH_CONTROL_SERVER_SANS",
        value_delimiter = ',',
        value_name = "NAME|IP"
    )]
    pub server_sans: Vec<String>,

    /// Plaintext gRPC (Delta ADS + CA) listen address. Loopback by
    /// default; see --authenticate before exposing it.
    #[arg(long, env = "MESH_CONTROL_XDS_ADDR", default_value = "127.0.0.1:15010")]
    pub xds_addr: SocketAddr,

    /// TLS gRPC (Delta ADS + CA) listen address. Loopback by default; see
    /// --authenticate before exposing it.
    #[arg(
        long,
        env = "MESH_CONTROL_XDS_TLS_ADDR",
        default_value = "127.0.0.1:15012"
    )]
    pub xds_tls_addr: SocketAddr,

    /// Admin HTTP endpoint (what `meshctl proxy-status` reads):
    /// /debug/syncz, /config_dump, /logging, /quitquitquit, /healthz/ready,
    /// /graph (the service graph page) and /graph/data.
    /// Unauthenticated, so keep it on loopback.
    #[arg(
        long,
        env = "MESH_CONTROL_ADMIN_ADDR",
        default_value = "127.0.0.1:15000"
    )]
    pub admin_addr: SocketAddr,

    /// Prometheus server the service graph (/graph) reads its numbers from
    /// (`http://host:port[/prefix]`), with instant PromQL queries over
    /// Istio's standard metrics. Without it the control plane scrapes the
    /// proxies itself (see --graph-scrape-interval).
    #[arg(long, env = "MESH_CONTROL_PROMETHEUS_URL", value_name = "URL")]
    pub prometheus_url: Option<crate::graph::PrometheusUrl>,

    /// Without --prometheus-url: how often the control plane scrapes
    /// `/stats/prometheus` on port 15020 of every connected proxy (agents,
    /// waypoints, gateways) and of each --graph-scrape-target for the
    /// service graph, keeping 15 minutes of snapshots (bounded: 100
    /// targets, 2000 series each, 8 MiB per body). 0 disables scraping.
    #[arg(long, env = "MESH_CONTROL_GRAPH_SCRAPE_INTERVAL", default_value = "5s", value_parser = duration::parse_flag)]
    pub graph_scrape_interval: Duration,

    /// Extra scrape target (HOST:PORT, repeatable or comma-separated)
    /// serving `/stats/prometheus`, for components that are not xDS
    /// clients of this control plane.
    #[arg(
        long = "graph-scrape-target",
        env = "MESH_CONTROL_GRAPH_SCRAPE_TARGETS",
        value_delimiter = ',',
        value_name = "HOST:PORT",
        value_parser = crate::graph::parse_target
    )]
    pub graph_scrape_targets: Vec<String>,

    /// Readiness endpoint (GET /healthz/ready: 200 once the configuration is
    /// loaded and the gRPC ports are served, 503 before and while stopping),
    /// for Kubernetes probes.
    #[arg(long, env = "MESH_CONTROL_READY_ADDR", default_value = "0.0.0.0:15021")]
    pub ready_addr: SocketAddr,

    /// How often --config-dir is polled for changes (200ms, 1s, …).
    /// Polling works on ConfigMap volumes, bind mounts and network
    /// filesystems, where file events are unreliable.
    #[arg(long, env = "MESH_CONTROL_RELOAD_INTERVAL", default_value = "1s", value_parser = duration::parse_flag)]
    pub reload_interval: Duration,

    /// On SIGTERM, SIGINT or `POST /quitquitquit`: how long open xDS
    /// streams may run on after the gRPC listeners stop accepting (`5s`,
    /// `2m`); then they are closed.
    #[arg(long, env = "MESH_CONTROL_DRAIN_TIMEOUT", default_value = "5s", value_parser = duration::parse_flag)]
    pub drain_timeout: Duration,

    /// Tokio worker threads. [default: one per CPU]
    #[arg(long, env = "MESH_CONTROL_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Log filter in RUST_LOG syntax, e.g. `info,mesh_control::serve=debug`.
    #[arg(long, env = "MESH_CONTROL_LOG", default_value = "info")]
    pub log: String,

    /// Log line format (logs go to stderr).
    #[arg(long, env = "MESH_CONTROL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceKind {
    /// YAML files of --config-dir, polled for changes.
    Directory,
    /// Watches of the Kubernetes API server.
    Kubernetes,
}

/// `--authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Anyone may connect and obtain any identity of the trust domain
    /// (demo, tests). Only loopback addresses unless given explicitly.
    None,
    /// Kubernetes ServiceAccount tokens, checked with TokenReview.
    Kubernetes,
}

/// Who can obtain identities from the gRPC ports, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Callers prove their identity (`--authenticate kubernetes`).
    Authenticated,
    /// No authentication, but only local processes can connect.
    LoopbackOnly,
    /// No authentication on a network address, chosen explicitly with
    /// `--authenticate none`: anyone who reaches it obtains any identity.
    Network,
}

/// An unauthenticated network bind reached by defaults rather than chosen.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "refusing to hand out any identity without authentication on --{flag} {addr}: \
     bind a loopback address, use --authenticate kubernetes, or pass \
     --authenticate none to accept that anyone reaching {addr} obtains a \
     certificate for any identity"
)]
pub struct UnchosenExposure {
    pub flag: &'static str,
    pub addr: SocketAddr,
}

impl ControlConfig {
    /// Who can obtain identities with this configuration; an
    /// unauthenticated non-loopback bind is an error unless
    /// `--authenticate none` was given explicitly.
    pub fn exposure(&self) -> Result<Exposure, UnchosenExposure> {
        if self.auth_mode() != AuthMode::None {
            return Ok(Exposure::Authenticated);
        }
        let exposed = [
            ("xds-addr", self.xds_addr),
            ("xds-tls-addr", self.xds_tls_addr),
        ]
        .into_iter()
        .find(|(_, addr)| !addr.ip().is_loopback());
        match (exposed, self.authenticate) {
            (None, _) => Ok(Exposure::LoopbackOnly),
            (Some(_), Some(AuthMode::None)) => Ok(Exposure::Network),
            (Some((flag, addr)), _) => Err(UnchosenExposure { flag, addr }),
        }
    }

    /// `--authenticate`, defaulted from `--source`.
    pub fn auth_mode(&self) -> AuthMode {
        self.authenticate.unwrap_or(match self.source {
            SourceKind::Directory => AuthMode::None,
            SourceKind::Kubernetes => AuthMode::Kubernetes,
        })
    }

    /// Defaults with the two required directories and ephemeral loopback
    /// ports: what tests start from.
    pub fn for_dirs(config_dir: impl Into<PathBuf>, ca_dir: impl Into<PathBuf>) -> Self {
        ControlConfig {
            config_dir: Some(config_dir.into()),
            source: SourceKind::Directory,
            kubeconfig: None,
            kube_list_timeout: Duration::from_secs(30),
            authenticate: None,
            token_audience: crate::authn::DEFAULT_AUDIENCE.into(),
            node_agent_accounts: vec![("istio-system".into(), "mesh-agent".into())],
            cluster_id: mesh_xds::client::node_identity::DEFAULT_CLUSTER_ID.into(),
            trust_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            cluster_domain: "cluster.local".into(),
            ca_dir: ca_dir.into(),
            root_ttl: crate::ca::DEFAULT_ROOT_TTL,
            cert_ttl: Duration::from_secs(3600),
            server_cert_ttl: Duration::from_secs(24 * 3600),
            server_sans: vec![],
            xds_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            xds_tls_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            prometheus_url: None,
            graph_scrape_interval: Duration::from_secs(5),
            graph_scrape_targets: vec![],
            reload_interval: crate::source::DEFAULT_RELOAD_INTERVAL,
            drain_timeout: mesh_admin::drain::DEFAULT_TIMEOUT,
            worker_threads: None,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
mod tests;
