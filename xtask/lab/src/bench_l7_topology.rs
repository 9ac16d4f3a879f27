//! The network of `cargo xtask bench l7`: one node with the pods `client`
//! (runs `loadgen`), `envoy` and `waypoint` (the two proxies as
//! waypoints), `gw-envoy` and `gw-mesh` (the two as ingress gateways; the
//! two proxies of a role run at once, loaded in turn), `upstream` (runs
//! `podhttp`), and the control
//! plane on the underlay feeding both proxies of a role the same routes:
//! one Service `bench` bound to waypoint `default/waypoint` and a
//! VirtualService with one simple route; for ingress, a Gateway selecting
//! the gateway pods (`bench_l7_ingress.rs`) and a VirtualService bound to
//! it with the same route. All traffic stays in network namespaces on this
//! machine.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Child,
    time::Duration,
};

use anyhow::Context as _;
use mesh_e2e::{
    cluster::{Cluster, CONTROL_IP},
    envoy::{self, Envoy, EnvoySpec, WaypointNode, XdsKind, WAYPOINT_HTTP_PORT},
    waypoint::{MeshWaypoint, WaypointSpec},
    Binaries,
};
use mesh_testkit::try_eventually;

use crate::bench_l7_ingress::{GW_ENVOY, GW_MESH, INGRESS, INGRESS_LABELS};

pub const APP_PORT: u16 = 9080;
/// `Host` the load generator sends through the proxies.
pub const HOST: &str = "bench:9080";
pub(crate) const READY: Duration = Duration::from_secs(30);

const VIRTUAL_SERVICE: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bench\n  namespace: default\nspec:\n  hosts:\n  - bench\n  http:\n  - name: all\n    match:\n    - uri:\n        prefix: /\n    route:\n    - destination:\n        host: bench\n        port:\n          number: 9080\n";

/// Which CPUs each party runs on: the proxy alone on the last CPU (its
/// figures are per core), the upstream app on the one before when there
/// are four or more, the load generator on the rest.
#[derive(Debug, Clone)]
pub struct Cpus {
    pub proxy: u32,
    pub upstream: String,
    pub loadgen: String,
    pub loadgen_threads: usize,
}

impl Cpus {
    pub fn for_machine(n: u32) -> Self {
        let n = n.max(2);
        let proxy = n - 1;
        if n >= 4 {
            Self {
                proxy,
                upstream: (n - 2).to_string(),
                loadgen: format!("0-{}", n - 3),
                loadgen_threads: (n - 2) as usize,
            }
        } else {
            let rest = format!("0-{}", n - 2);
            Self {
                proxy,
                upstream: rest.clone(),
                loadgen: rest,
                loadgen_threads: (n - 1) as usize,
            }
        }
    }
}

/// Paths of what the bench runs.
pub struct Programs {
    pub control: PathBuf,
    pub podhttp: PathBuf,
    pub loadgen: PathBuf,
    pub envoy: PathBuf,
    pub waypoint: PathBuf,
    /// Another mesh-waypoint build measured in Envoy's place (A/B).
    pub baseline: Option<PathBuf>,
}

pub struct Bed {
    /// The upstream app; stopped before the cluster.
    upstream: Option<Child>,
    pub cluster: Cluster,
    pub cpus: Cpus,
}

impl Bed {
    pub fn new(programs: &Programs, cpus: Cpus) -> anyhow::Result<Self> {
        let bins = Binaries {
            agent: PathBuf::from("/nonexistent/mesh-agent (no agent in bench l7)"),
            podctl: programs.podhttp.clone(),
            control: programs.control.clone(),
            waypoint: programs.waypoint.clone(),
            podhttp: programs.podhttp.clone(),
        };
        let mut cluster = Cluster::new(
            "ml7",
            bins,
            &[(
                "node1",
                &["client", "envoy", "waypoint", GW_ENVOY, GW_MESH, "upstream"],
            )],
        )?;
        cluster.write_config("00-topology.yaml", &topology_yaml(&cluster))?;
        cluster.write_config("10-virtual-service.yaml", VIRTUAL_SERVICE)?;
        cluster.write_config("20-ingress.yaml", INGRESS)?;
        cluster.start_control(&[])?;
        let log = cluster.dir.join("podhttp.log");
        let upstream = envoy::spawn_in(
            Some(&cluster.pod("upstream").netns.path()),
            None,
            Path::new("taskset"),
            &[
                "-c".into(),
                cpus.upstream.clone(),
                programs.podhttp.display().to_string(),
                "serve".into(),
                "--port".into(),
                APP_PORT.to_string(),
                "--pod".into(),
                "bench-v1".into(),
            ],
            &log,
        )?;
        let mut bed = Self {
            upstream: Some(upstream),
            cluster,
            cpus,
        };
        bed.wait_upstream()?;
        Ok(bed)
    }

    fn wait_upstream(&mut self) -> anyhow::Result<()> {
        let addr = self.upstream_addr();
        let ns = self.netns("client");
        try_eventually(&format!("podhttp listening on {addr}"), READY, || {
            mesh_e2e::netns::connect_in(&ns, addr, Duration::from_millis(200)).map(drop)
        })?;
        Ok(())
    }

    pub fn netns(&self, pod: &str) -> PathBuf {
        self.cluster.pod(pod).netns.path()
    }

    pub fn upstream_addr(&self) -> SocketAddr {
        self.cluster.pod("upstream").addr(APP_PORT)
    }

    pub fn proxy_addr(&self, pod: &str) -> SocketAddr {
        self.cluster.pod(pod).addr(WAYPOINT_HTTP_PORT)
    }

    pub(crate) fn node(&self, pod: &str, name: &str) -> WaypointNode {
        WaypointNode {
            pod_ip: self.cluster.pod(pod).ip.into(),
            pod_name: name.into(),
            namespace: "default".into(),
            waypoint: "waypoint".into(),
        }
    }

    /// Envoy with one worker on the proxy CPU, once it accepted LDS, RDS,
    /// CDS and EDS and answers through the route.
    pub fn start_envoy(&self, bin: &Path) -> anyhow::Result<Envoy> {
        let mut spec = EnvoySpec::new(
            self.node("envoy", "waypoint-envoy"),
            SocketAddr::from((CONTROL_IP, 15010)),
        );
        spec.concurrency = 1;
        spec.cpu = Some(self.cpus.proxy);
        spec.log_level = "warn".into();
        let netns = self.netns("envoy");
        let mut envoy = Envoy::start(bin, spec, Some(&netns), &self.cluster.dir.join("envoy"))?;
        envoy.wait_live(READY)?;
        envoy.wait_xds_accepted(
            &[XdsKind::Lds, XdsKind::Rds, XdsKind::Cds, XdsKind::Eds],
            READY,
        )?;
        self.wait_route(self.proxy_addr("envoy"), HOST, "envoy")?;
        Ok(envoy)
    }

    /// mesh-waypoint with one worker on the proxy CPU, once ready and
    /// answering through the route.
    pub fn start_waypoint(&self, bin: &Path) -> anyhow::Result<MeshWaypoint> {
        self.start_waypoint_in(bin, "waypoint", "waypoint")
    }

    /// [`Bed::start_waypoint`] in harness pod `pod` (Kubernetes pod
    /// `name`, a pod of waypoint `default/waypoint`): a second build in
    /// Envoy's place for an A/B of two builds.
    pub fn start_waypoint_in(
        &self,
        bin: &Path,
        pod: &str,
        name: &str,
    ) -> anyhow::Result<MeshWaypoint> {
        let mut spec = WaypointSpec::new(
            self.node(pod, name),
            "waypoint",
            SocketAddr::from((CONTROL_IP, 15010)),
        );
        spec.workers = 1;
        spec.cpu = Some(self.cpus.proxy);
        spec.log = "warn".into();
        let netns = self.netns(pod);
        let dir = self.cluster.dir.join(format!("mesh-waypoint-{pod}"));
        let mut wp = MeshWaypoint::start(bin, spec, Some(&netns), &dir)?;
        wp.wait_ready(READY)?;
        self.wait_route(self.proxy_addr(pod), HOST, "mesh-waypoint")?;
        Ok(wp)
    }

    /// Waits until a GET through `addr` with `Host: <host>` answers 200
    /// (the endpoints arrive after the routes).
    pub(crate) fn wait_route(&self, addr: SocketAddr, host: &str, who: &str) -> anyhow::Result<()> {
        let ns = self.netns("client");
        try_eventually(
            &format!("{who} at {addr} to route {host}"),
            READY,
            || match get(&ns, addr, host) {
                Ok(200) => Ok(()),
                Ok(status) => Err(format!("status {status}")),
                Err(e) => Err(format!("{e:#}")),
            },
        )?;
        Ok(())
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut child) = self.upstream.take() {
            mesh_e2e::cmd::terminate(&mut child);
        }
    }
}

/// One HTTP/1.1 GET `/` with `Host: <host>` from inside `netns`.
fn get(netns: &Path, addr: SocketAddr, host: &str) -> anyhow::Result<u16> {
    use std::io::{Read as _, Write as _};
    let mut conn = mesh_e2e::netns::connect_in(netns, addr, Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        conn,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    conn.read_exact(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line from {addr}: {text:?}"))
}

fn topology_yaml(c: &Cluster) -> String {
    let pod = |name: &str, harness: &str, labels: &str, sa: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n{labels}spec:\n  serviceAccountName: {sa}\n  nodeName: node1\nstatus:\n  podIP: {}\n",
            c.pod(harness).ip
        )
    };
    let waypoint_labels = "    gateway.networking.k8s.io/gateway-name: waypoint\n";
    [
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels:\n    istio.io/dataplane-mode: ambient\n    istio.io/use-waypoint: waypoint\n".to_string(),
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 10.0.0.1\n".to_string(),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: waypoint\n  namespace: default\nspec:\n  gatewayClassName: istio-waypoint\n  listeners:\n  - name: mesh\n    port: 15008\n    protocol: HBONE\n".to_string(),
        pod("waypoint", "waypoint", waypoint_labels, "waypoint"),
        pod("waypoint-envoy", "envoy", waypoint_labels, "waypoint"),
        pod(GW_ENVOY, GW_ENVOY, INGRESS_LABELS, "ingress"),
        pod(GW_MESH, GW_MESH, INGRESS_LABELS, "ingress"),
        pod(
            "bench-v1",
            "upstream",
            "    app: bench\n    version: v1\n    istio.io/dataplane-mode: none\n",
            "bench",
        ),
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: bench\n  namespace: default\nspec:\n  clusterIP: 10.96.0.30\n  selector:\n    app: bench\n  ports:\n  - name: http\n    port: {APP_PORT}\n    targetPort: {APP_PORT}\n"),
    ]
    .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_split() {
        let two = Cpus::for_machine(2);
        assert_eq!(
            (two.proxy, two.upstream.as_str(), two.loadgen.as_str()),
            (1, "0-0", "0-0")
        );
        let eight = Cpus::for_machine(8);
        assert_eq!(eight.proxy, 7);
        assert_eq!(eight.upstream, "6");
        assert_eq!(eight.loadgen, "0-5");
        assert_eq!(eight.loadgen_threads, 6);
    }
}
