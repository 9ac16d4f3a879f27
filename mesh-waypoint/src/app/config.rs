//! The waypoint's settings: flags with environment fallbacks, turned into
//! a typed [`WaypointConfig`] tests build directly. Flags are spelled as
//! the agent's and the control plane's for the same setting; the older
//! spellings stay as hidden aliases. Durations are Go durations
//! (`mesh_admin::duration`).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser};
use mesh_admin::{duration, log_control::LogFormat};

/// Environment variables renamed with their flag: (old, new). The old
/// name still works when the new one is unset (see [`Args::parse_env`]).
pub const RENAMED_ENV: &[(&str, &str)] = &[
    ("MESH_WAYPOINT_XDS_CA", "MESH_WAYPOINT_TRUST_BUNDLE"),
    ("MESH_WAYPOINT_WORKERS", "MESH_WAYPOINT_WORKER_THREADS"),
    ("MESH_WAYPOINT_PROBE_ADDR", "MESH_WAYPOINT_READY_ADDR"),
    ("MESH_WAYPOINT_CERT_TTL_SECS", "MESH_WAYPOINT_CERT_TTL"),
    ("MESH_WAYPOINT_DRAIN_SECS", "MESH_WAYPOINT_DRAIN_TIMEOUT"),
    ("RUST_LOG", "MESH_WAYPOINT_LOG"),
];

/// mesh-waypoint: the mesh's optional L7 proxy (Istio's waypoint).
///
/// Receives HBONE tunnels (HTTP/2 CONNECT over mTLS) from node agents on
/// --hbone-addr, routes the HTTP inside them with Istio VirtualService /
/// DestinationRule semantics received from the control plane as standard
/// Envoy xDS (Listener, RouteConfiguration, Cluster, ClusterLoadAssignment
/// plus Istio's Address), and forwards each request to the chosen endpoint
/// (over HBONE to mesh workloads). The same routes are served as plain
/// HTTP on --http-addr. Admin (config_dump, metrics, logging, readiness,
/// quitquitquit) on --admin-addr, loopback only by default; the kubelet's
/// probes on --ready-addr and Prometheus on --metrics-addr, which serve
/// nothing that changes state. With --role gateway it is an ingress
/// gateway instead: no HBONE or plain listener; the Listeners the control
/// plane sends are bound at their addresses, TLS terminated by SNI.
#[derive(Debug, Clone, Parser)]
#[command(name = "mesh-waypoint", version, about, long_about)]
pub struct Args {
    /// Control plane xDS endpoint: http://host:15010 (plaintext) or
    /// https://host:15012 (verified with --trust-bundle).
    #[arg(long, env = "MESH_WAYPOINT_XDS_ADDR")]
    pub xds_addr: Option<String>,
    /// PEM file with the mesh root certificate(s): verifies the control
    /// plane's TLS, the CA's TLS and HBONE peers. Without it the root comes
    /// from the CA's certificate chain.
    #[arg(long, env = "MESH_WAYPOINT_TRUST_BUNDLE", alias = "xds-ca")]
    pub trust_bundle: Option<PathBuf>,
    /// Mesh CA endpoint for the waypoint's own certificate (Istio's
    /// CreateCertificate). [default: --xds-addr]
    #[arg(long, env = "MESH_WAYPOINT_CA_ADDR")]
    pub ca_addr: Option<String>,
    /// Waypoint (Gateway) name W: the Listener and RouteConfiguration are
    /// named waypoint/<namespace>/<name>.
    #[arg(long, env = "MESH_WAYPOINT_NAME", default_value = "waypoint")]
    pub name: String,
    /// Namespace of the waypoint.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Service account: the identity is
    /// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
    #[arg(long, env = "SERVICE_ACCOUNT", default_value = "default")]
    pub service_account: String,
    /// SPIFFE trust domain.
    #[arg(
        long,
        env = "MESH_WAYPOINT_TRUST_DOMAIN",
        default_value = "cluster.local"
    )]
    pub trust_domain: String,
    /// This pod's IP (xDS node id).
    #[arg(long, env = "POD_IP", default_value = "127.0.0.1")]
    pub pod_ip: String,
    /// This pod's name (xDS node id). [default: the hostname]
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Where HBONE tunnels are accepted (needs a certificate: --ca-addr or
    /// --xds-addr).
    #[arg(
        long,
        env = "MESH_WAYPOINT_HBONE_ADDR",
        default_value_t = SocketAddr::from(([0, 0, 0, 0], mesh_hbone::HBONE_PORT))
    )]
    pub hbone_addr: SocketAddr,
    /// Plain HTTP listener (the same routes, virtual host by Host).
    #[arg(long, env = "MESH_WAYPOINT_HTTP_ADDR", default_value = "0.0.0.0:15080")]
    pub http_addr: SocketAddr,
    /// Admin endpoint: /config_dump, /metrics, /logging, /ready,
    /// /quitquitquit. Anyone who reaches it can stop the waypoint or change
    /// its logging: keep it on loopback (`kubectl port-forward` reaches it).
    #[arg(
        long,
        env = "MESH_WAYPOINT_ADMIN_ADDR",
        default_value = "127.0.0.1:15000"
    )]
    pub admin_addr: SocketAddr,
    /// Probe endpoint for the kubelet: GET /healthz/ready (every xDS type
    /// received, not draining) and GET /healthz/live, nothing else.
    #[arg(
        long,
        env = "MESH_WAYPOINT_READY_ADDR",
        alias = "probe-addr",
        default_value = "0.0.0.0:15021"
    )]
    pub ready_addr: SocketAddr,
    /// Prometheus endpoint: GET /metrics and /stats/prometheus, nothing else.
    #[arg(
        long,
        env = "MESH_WAYPOINT_METRICS_ADDR",
        default_value = "0.0.0.0:15020"
    )]
    pub metrics_addr: SocketAddr,
    /// Tokio worker threads.
    #[arg(
        long,
        env = "MESH_WAYPOINT_WORKER_THREADS",
        alias = "workers",
        default_value_t = 2
    )]
    pub worker_threads: usize,
    /// Trace collector for OTLP over gRPC, e.g. http://collector:4317
    /// (the OpenTelemetry Collector's, Jaeger's or Phoenix's gRPC port).
    /// Spans carry Istio's names and tags; W3C and B3 headers are
    /// continued either way. Unset: no export.
    #[arg(long, env = "MESH_WAYPOINT_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log filter in RUST_LOG syntax (changeable at runtime via /logging).
    #[arg(long, env = "MESH_WAYPOINT_LOG", default_value = "info")]
    pub log: String,
    /// Log line format (logs go to stderr).
    #[arg(long, env = "MESH_WAYPOINT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Write an access log line per request (target `access`); a bare
    /// flag means true.
    #[arg(long, env = "MESH_WAYPOINT_ACCESS_LOG", action = ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true", value_name = "BOOL",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub access_log: bool,
    /// Lifetime asked for the waypoint certificate (`90s`, `30m`, `24h`;
    /// a plain number is seconds); renewed at half-life.
    #[arg(long, env = "MESH_WAYPOINT_CERT_TTL", alias = "cert-ttl-secs",
          default_value = "24h", value_parser = duration::parse_flag)]
    pub cert_ttl: Duration,
    /// On SIGTERM, SIGINT or `POST /quitquitquit`: how long open
    /// connections may finish after the listeners stop accepting (`5s`,
    /// `2m`; a plain number is seconds).
    #[arg(long, env = "MESH_WAYPOINT_DRAIN_TIMEOUT", alias = "drain-secs",
          default_value = "5s", value_parser = duration::parse_flag)]
    pub drain_timeout: Duration,
    /// ServiceAccount token file (a projected token, audience `istio-ca`)
    /// sent as `authorization: Bearer` on the xDS stream and certificate
    /// requests, for a control plane that checks callers with a Kubernetes
    /// TokenReview; read again for every request. [default: send no token]
    #[arg(long, env = "MESH_WAYPOINT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// waypoint: HBONE on --hbone-addr and plain HTTP on --http-addr, the
    /// Listener waypoint/<namespace>/<name>. gateway: an ingress gateway
    /// (docs/contracts/gateway-xds.md): every Listener the control plane
    /// sends is bound at its address, with TLS termination by SNI; no HBONE
    /// or --http-addr listener.
    #[arg(long, env = "MESH_WAYPOINT_ROLE", value_enum, default_value_t = Role::Waypoint)]
    pub role: Role,
    /// Gateway: where `kubernetes://<secret>` certificates are mounted
    /// (`<dir>/<secret>/tls.crt`, `tls.key`, `ca.crt`).
    #[arg(
        long,
        env = "MESH_WAYPOINT_CREDENTIAL_DIR",
        default_value = "/etc/istio/credentials"
    )]
    pub credential_dir: PathBuf,
    /// DNS server (`ip:port`) for the hostnames of STRICT_DNS / LOGICAL_DNS
    /// clusters (ServiceEntry hosts with DNS resolution), asked over UDP
    /// then TCP; record TTLs are honoured. [default: the servers in
    /// /etc/resolv.conf]
    #[arg(long, env = "MESH_WAYPOINT_DNS_UPSTREAM")]
    pub dns_upstream: Option<SocketAddr>,
}

/// What the L7 engine serves: the same routes, filters and upstreams
/// behind different listeners and a different xDS node type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Waypoint,
    Gateway,
}

/// Everything `app::run` needs.
#[derive(Debug, Clone)]
pub struct WaypointConfig {
    pub xds_addr: Option<String>,
    pub trust_bundle: Option<PathBuf>,
    pub ca_addr: Option<String>,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub trust_domain: String,
    pub pod_ip: String,
    pub pod_name: String,
    pub hbone_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub ready_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub otlp_endpoint: Option<String>,
    pub access_log: bool,
    pub cert_ttl: Duration,
    pub drain_timeout: Duration,
    pub token_file: Option<PathBuf>,
    pub role: Role,
    pub credential_dir: PathBuf,
    pub dns_upstream: Option<SocketAddr>,
}

impl Args {
    /// Parses the command line; an environment variable renamed with its
    /// flag is still read under its old name when the new one is unset.
    pub fn parse_env() -> Self {
        mesh_admin::flags::parse(RENAMED_ENV)
    }
}

impl WaypointConfig {
    pub fn from_args(a: &Args) -> Self {
        let pod_name = a.pod_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "mesh-waypoint".into())
        });
        WaypointConfig {
            xds_addr: a.xds_addr.clone(),
            trust_bundle: a.trust_bundle.clone(),
            ca_addr: a.ca_addr.clone().or_else(|| a.xds_addr.clone()),
            name: a.name.clone(),
            namespace: a.namespace.clone(),
            service_account: a.service_account.clone(),
            trust_domain: a.trust_domain.clone(),
            pod_ip: a.pod_ip.clone(),
            pod_name,
            hbone_addr: a.hbone_addr,
            http_addr: a.http_addr,
            admin_addr: a.admin_addr,
            ready_addr: a.ready_addr,
            metrics_addr: a.metrics_addr,
            otlp_endpoint: a.otlp_endpoint.clone(),
            access_log: a.access_log,
            cert_ttl: a.cert_ttl,
            drain_timeout: a.drain_timeout,
            token_file: a.token_file.clone(),
            role: a.role,
            credential_dir: a.credential_dir.clone(),
            dns_upstream: a.dns_upstream,
        }
    }

    /// `waypoint/<ns>/<name>`: the Listener and RouteConfiguration name.
    pub fn listener_name(&self) -> String {
        format!("waypoint/{}/{}", self.namespace, self.name)
    }

    /// The xDS node id: `waypoint~<pod ip>~<pod name>.<ns>~<ns>.svc.cluster.local`
    /// (docs/contracts/waypoint-xds.md), `router~…` as a gateway
    /// (docs/contracts/gateway-xds.md).
    pub fn node_id(&self) -> String {
        let node_type = match self.role {
            Role::Waypoint => "waypoint",
            Role::Gateway => "router",
        };
        format!(
            "{node_type}~{}~{}.{}~{}.svc.cluster.local",
            self.pod_ip, self.pod_name, self.namespace, self.namespace
        )
    }

    /// The xDS node metadata: `NAMESPACE`, and `WAYPOINT=<name>` or, as a
    /// gateway, `NAME=<pod name>`.
    pub fn node_metadata(&self) -> std::collections::BTreeMap<String, String> {
        let own = match self.role {
            Role::Waypoint => ("WAYPOINT".to_string(), self.name.clone()),
            Role::Gateway => ("NAME".to_string(), self.pod_name.clone()),
        };
        std::collections::BTreeMap::from([("NAMESPACE".to_string(), self.namespace.clone()), own])
    }

    pub fn identity(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let a = Args::parse_from([
            "mesh-waypoint",
            "--name",
            "w",
            "--namespace",
            "bookinfo",
            "--pod-ip",
            "10.244.1.9",
            "--pod-name",
            "w-abc",
            "--service-account",
            "w-sa",
            "--xds-addr",
            "http://10.0.0.254:15010",
        ]);
        let c = WaypointConfig::from_args(&a);
        assert_eq!(c.listener_name(), "waypoint/bookinfo/w");
        assert_eq!(
            c.node_id(),
            "waypoint~10.244.1.9~w-abc.bookinfo~bookinfo.svc.cluster.local"
        );
        assert_eq!(c.identity(), "spiffe://cluster.local/ns/bookinfo/sa/w-sa");
        assert_eq!(c.ca_addr.as_deref(), Some("http://10.0.0.254:15010"));
        assert_eq!(c.hbone_addr.port(), 15008);
        assert_eq!(c.role, Role::Waypoint);
        assert_eq!(c.node_metadata()["WAYPOINT"], "w");
    }

    #[test]
    fn gateway_role_is_a_router_node() {
        let a = Args::parse_from([
            "mesh-waypoint",
            "--role",
            "gateway",
            "--namespace",
            "istio-ingress",
            "--pod-ip",
            "10.244.1.7",
            "--pod-name",
            "gw-abc",
        ]);
        let c = WaypointConfig::from_args(&a);
        assert_eq!(c.role, Role::Gateway);
        assert_eq!(
            c.node_id(),
            "router~10.244.1.7~gw-abc.istio-ingress~istio-ingress.svc.cluster.local"
        );
        let meta = c.node_metadata();
        assert_eq!(meta["NAMESPACE"], "istio-ingress");
        assert_eq!(meta["NAME"], "gw-abc");
        assert!(!meta.contains_key("WAYPOINT"));
        assert_eq!(
            c.credential_dir,
            std::path::Path::new("/etc/istio/credentials")
        );
        assert_eq!(c.dns_upstream, None);
        let a = Args::parse_from(["mesh-waypoint", "--dns-upstream", "127.0.0.53:5353"]);
        assert_eq!(
            WaypointConfig::from_args(&a).dns_upstream,
            Some("127.0.0.53:5353".parse().unwrap())
        );
    }

    #[test]
    fn admin_is_loopback_only_by_default() {
        let c = WaypointConfig::from_args(&Args::parse_from(["mesh-waypoint"]));
        assert!(
            c.admin_addr.ip().is_loopback(),
            "admin (/quitquitquit, /logging) exposed on {}",
            c.admin_addr
        );
        assert_eq!(c.admin_addr.port(), 15000);
        assert_eq!(c.ready_addr.port(), 15021);
        assert_eq!(c.metrics_addr.port(), 15020);
    }

    #[test]
    fn flags_match_the_other_daemons_and_old_spellings_still_work() {
        let c = WaypointConfig::from_args(&Args::parse_from([
            "mesh-waypoint",
            "--trust-bundle",
            "/etc/root.pem",
            "--cert-ttl",
            "1h30m",
            "--drain-timeout",
            "1.5s",
            "--worker-threads",
            "3",
        ]));
        assert_eq!(
            c.trust_bundle.as_deref(),
            Some(std::path::Path::new("/etc/root.pem"))
        );
        assert_eq!(c.cert_ttl, Duration::from_secs(5400));
        assert_eq!(c.drain_timeout, Duration::from_millis(1500));
        let old = Args::parse_from([
            "mesh-waypoint",
            "--xds-ca",
            "/etc/root.pem",
            "--cert-ttl-secs",
            "3600",
            "--drain-secs",
            "7",
            "--workers",
            "3",
            "--probe-addr",
            "0.0.0.0:16021",
            "--access-log",
        ]);
        assert_eq!(old.worker_threads, 3);
        assert!(old.access_log);
        let c = WaypointConfig::from_args(&old);
        assert_eq!(
            c.trust_bundle.as_deref(),
            Some(std::path::Path::new("/etc/root.pem"))
        );
        assert_eq!(c.cert_ttl, Duration::from_secs(3600));
        assert_eq!(c.drain_timeout, Duration::from_secs(7));
        assert_eq!(c.ready_addr.port(), 16021);
        let defaults = WaypointConfig::from_args(&Args::parse_from(["mesh-waypoint"]));
        assert_eq!(defaults.cert_ttl, Duration::from_secs(86_400));
        assert_eq!(defaults.drain_timeout, Duration::from_secs(5));
        assert!(!defaults.access_log);
    }
}
