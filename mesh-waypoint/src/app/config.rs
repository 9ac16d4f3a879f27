//! The waypoint's settings: flags (contract §5) with environment
//! fallbacks, turned into a typed [`WaypointConfig`] tests build directly.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

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
/// probes on --probe-addr and Prometheus on --metrics-addr, which serve
/// nothing that changes state.
#[derive(Debug, Clone, Parser)]
#[command(name = "mesh-waypoint", version, about, long_about)]
pub struct Args {
    /// Control plane xDS endpoint: http://host:15010 (plaintext) or
    /// https://host:15012 (verified with --xds-ca).
    #[arg(long, env = "MESH_WAYPOINT_XDS_ADDR")]
    pub xds_addr: Option<String>,
    /// PEM file with the mesh root certificate(s): verifies the control
    /// plane's TLS, the CA's TLS and HBONE peers. Without it the root comes
    /// from the CA's certificate chain.
    #[arg(long, env = "MESH_WAYPOINT_XDS_CA")]
    pub xds_ca: Option<PathBuf>,
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
        default_value = "0.0.0.0:15008"
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
        env = "MESH_WAYPOINT_PROBE_ADDR",
        default_value = "0.0.0.0:15021"
    )]
    pub probe_addr: SocketAddr,
    /// Prometheus endpoint: GET /metrics and /stats/prometheus, nothing else.
    #[arg(
        long,
        env = "MESH_WAYPOINT_METRICS_ADDR",
        default_value = "0.0.0.0:15020"
    )]
    pub metrics_addr: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, env = "MESH_WAYPOINT_WORKERS", default_value_t = 2)]
    pub workers: usize,
    /// OTLP/HTTP JSON trace collector, e.g. http://collector:4318.
    #[arg(long, env = "MESH_WAYPOINT_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log filter in RUST_LOG syntax (changeable at runtime via /logging).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
    /// Write an access log line per request (target `access`).
    #[arg(long, env = "MESH_WAYPOINT_ACCESS_LOG")]
    pub access_log: bool,
    /// Lifetime asked for the waypoint certificate (renewed at half-life), seconds.
    #[arg(long, env = "MESH_WAYPOINT_CERT_TTL_SECS", default_value_t = 86_400)]
    pub cert_ttl_secs: u64,
    /// How long open connections may finish after SIGTERM or /quitquitquit, seconds.
    #[arg(long, env = "MESH_WAYPOINT_DRAIN_SECS", default_value_t = 5)]
    pub drain_secs: u64,
    /// ServiceAccount token file (a projected token, audience `istio-ca`)
    /// sent as `authorization: Bearer` on the xDS stream and certificate
    /// requests, for a control plane that checks callers with a Kubernetes
    /// TokenReview; read again for every request. [default: send no token]
    #[arg(long, env = "MESH_WAYPOINT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// Everything `app::run` needs.
#[derive(Debug, Clone)]
pub struct WaypointConfig {
    pub xds_addr: Option<String>,
    pub xds_ca: Option<PathBuf>,
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
    pub probe_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub otlp_endpoint: Option<String>,
    pub access_log: bool,
    pub cert_ttl: Duration,
    pub drain: Duration,
    pub token_file: Option<PathBuf>,
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
            xds_ca: a.xds_ca.clone(),
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
            probe_addr: a.probe_addr,
            metrics_addr: a.metrics_addr,
            otlp_endpoint: a.otlp_endpoint.clone(),
            access_log: a.access_log,
            cert_ttl: Duration::from_secs(a.cert_ttl_secs),
            drain: Duration::from_secs(a.drain_secs),
            token_file: a.token_file.clone(),
        }
    }

    /// `waypoint/<ns>/<name>`: the Listener and RouteConfiguration name.
    pub fn listener_name(&self) -> String {
        format!("waypoint/{}/{}", self.namespace, self.name)
    }

    /// Contract §2: `waypoint~<pod ip>~<pod name>.<ns>~<ns>.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        format!(
            "waypoint~{}~{}.{}~{}.svc.cluster.local",
            self.pod_ip, self.pod_name, self.namespace, self.namespace
        )
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
        assert_eq!(c.probe_addr.port(), 15021);
        assert_eq!(c.metrics_addr.port(), 15020);
    }
}
