//! Typed configuration of the `mesh-control` binary, read from flags and
//! `MESH_CONTROL_*` environment variables (flags win). Tests build
//! [`ControlConfig`] directly (see [`ControlConfig::for_dirs`]).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

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
/// and changes the log level at runtime.
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
    #[arg(long, env = "MESH_CONTROL_KUBE_LIST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
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
    #[arg(long, env = "MESH_CONTROL_TOKEN_AUDIENCE", default_value = crate::auth::DEFAULT_AUDIENCE)]
    pub token_audience: String,

    /// Service account (NAMESPACE/NAME, repeatable or comma-separated) of
    /// node agents: they may obtain certificates for the pods scheduled on
    /// their own node (the node their token is bound to).
    #[arg(
        long = "node-agent-account",
        env = "MESH_CONTROL_NODE_AGENT_ACCOUNTS",
        value_delimiter = ',',
        value_name = "NS/SA",
        default_value = crate::auth::DEFAULT_NODE_AGENT,
        value_parser = crate::auth::parse_account
    )]
    pub node_agent_accounts: Vec<(String, String)>,

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

    /// Lifetime of a newly generated CA root (e.g. 3650d).
    #[arg(long, env = "MESH_CONTROL_ROOT_TTL", default_value = "3650d", value_parser = parse_duration)]
    pub root_ttl: Duration,

    /// Workload certificate lifetime when a request names none (30s, 10m,
    /// 1h, …). Requests are clamped to 10s … 24h.
    #[arg(long, env = "MESH_CONTROL_CERT_TTL", default_value = "1h", value_parser = parse_duration)]
    pub cert_ttl: Duration,

    /// Lifetime of the control plane's own serving certificate on
    /// --xds-tls-addr; renewed at half-life.
    #[arg(long, env = "MESH_CONTROL_SERVER_CERT_TTL", default_value = "24h", value_parser = parse_duration)]
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
    /// /debug/syncz, /config_dump, /logging, /quitquitquit, /healthz/ready.
    /// Unauthenticated, so keep it on loopback.
    #[arg(
        long,
        env = "MESH_CONTROL_ADMIN_ADDR",
        default_value = "127.0.0.1:15000"
    )]
    pub admin_addr: SocketAddr,

    /// Readiness endpoint (GET /healthz/ready: 200 once the configuration is
    /// loaded and the gRPC ports are served, 503 before and while stopping),
    /// for Kubernetes probes.
    #[arg(long, env = "MESH_CONTROL_READY_ADDR", default_value = "0.0.0.0:15021")]
    pub ready_addr: SocketAddr,

    /// How often --config-dir is polled for changes (200ms, 1s, …).
    /// Polling works on ConfigMap volumes, bind mounts and network
    /// filesystems, where file events are unreliable.
    #[arg(long, env = "MESH_CONTROL_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub reload_interval: Duration,

    /// Log filter in RUST_LOG syntax, e.g. `info,mesh_control::server=debug`.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
            token_audience: crate::auth::DEFAULT_AUDIENCE.into(),
            node_agent_accounts: vec![("istio-system".into(), "mesh-agent".into())],
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
            reload_interval: crate::source::DEFAULT_RELOAD_INTERVAL,
            log: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

/// `200ms`, `30s`, `10m`, `1h`, `3650d`, combinations such as `1h30m`, or
/// plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration like 200ms, 30s, 10m, 1h or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            unit => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
                ))
            }
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("3650d"),
            Ok(Duration::from_secs(3650 * 86400))
        );
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "h", "1x", "1.5h", "-1s", "1h 30m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_and_defaults() {
        let config = ControlConfig::try_parse_from([
            "mesh-control",
            "--config-dir",
            "/etc/mesh",
            "--ca-dir",
            "/var/lib/mesh-ca",
            "--cert-ttl",
            "30s",
            "--server-san",
            "cp.example,10.0.0.254",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(config.cert_ttl, Duration::from_secs(30));
        assert_eq!(config.reload_interval, Duration::from_secs(1));
        assert_eq!(config.xds_addr, "127.0.0.1:15010".parse().unwrap());
        assert_eq!(config.xds_tls_addr, "127.0.0.1:15012".parse().unwrap());
        assert_eq!(config.admin_addr, "127.0.0.1:15000".parse().unwrap());
        assert_eq!(config.ready_addr, "0.0.0.0:15021".parse().unwrap());
        assert_eq!(config.trust_domain, "cluster.local");
        assert_eq!(config.root_namespace, "istio-system");
        assert_eq!(config.server_sans, ["cp.example", "10.0.0.254"]);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.source, SourceKind::Directory);
        assert_eq!(config.auth_mode(), AuthMode::None);
        assert_eq!(config.token_audience, "istio-ca");
        assert_eq!(
            config.node_agent_accounts,
            [("istio-system".to_string(), "mesh-agent".to_string())]
        );
        assert!(ControlConfig::try_parse_from(["mesh-control"]).is_err());
    }

    #[test]
    fn defaults_serve_identities_on_loopback_only() {
        let config = ControlConfig::try_parse_from([
            "mesh-control",
            "--config-dir",
            "/c",
            "--ca-dir",
            "/ca",
        ])
        .unwrap();
        assert_eq!(config.auth_mode(), AuthMode::None);
        assert!(config.xds_addr.ip().is_loopback(), "{}", config.xds_addr);
        assert!(
            config.xds_tls_addr.ip().is_loopback(),
            "{}",
            config.xds_tls_addr
        );
        assert_eq!(config.exposure().unwrap(), Exposure::LoopbackOnly);
        let exposed = ControlConfig {
            xds_tls_addr: "10.0.0.254:15012".parse().unwrap(),
            ..config
        };
        let err = exposed.exposure().unwrap_err();
        assert_eq!(err.flag, "xds-tls-addr");
        let chosen = ControlConfig {
            authenticate: Some(AuthMode::None),
            ..exposed.clone()
        };
        assert_eq!(chosen.exposure().unwrap(), Exposure::Network);
        let authenticated = ControlConfig {
            authenticate: Some(AuthMode::Kubernetes),
            ..exposed
        };
        assert_eq!(authenticated.exposure().unwrap(), Exposure::Authenticated);
    }

    #[test]
    fn kubernetes_source_flags() {
        let config = ControlConfig::try_parse_from([
            "mesh-control",
            "--source",
            "kubernetes",
            "--kubeconfig",
            "/tmp/kc",
            "--ca-dir",
            "/ca",
            "--token-audience",
            "mesh",
            "--node-agent-account",
            "kube-system/agent,mesh/agent2",
        ])
        .unwrap();
        assert_eq!(config.source, SourceKind::Kubernetes);
        assert_eq!(config.auth_mode(), AuthMode::Kubernetes);
        assert_eq!(
            config.kubeconfig.as_deref(),
            Some(std::path::Path::new("/tmp/kc"))
        );
        assert_eq!(config.token_audience, "mesh");
        assert_eq!(config.node_agent_accounts.len(), 2);
        assert_eq!(
            config.node_agent_accounts[1],
            ("mesh".into(), "agent2".into())
        );
        let explicit = ControlConfig::try_parse_from([
            "mesh-control",
            "--source",
            "kubernetes",
            "--ca-dir",
            "/ca",
            "--authenticate",
            "none",
        ])
        .unwrap();
        assert_eq!(explicit.auth_mode(), AuthMode::None);
        let bad = ControlConfig::try_parse_from([
            "mesh-control",
            "--ca-dir",
            "/ca",
            "--node-agent-account",
            "nope",
        ])
        .unwrap_err();
        assert!(bad.to_string().contains("NAMESPACE/NAME"), "{bad}");
    }
}
