//! A `mesh-waypoint` process: in a waypoint pod of a `Cluster`, or beside a
//! stock Envoy (see `envoy/`) in the differential test and the bench. Its
//! admin (docs/contracts/waypoint-admin.md) is read for `/ready`,
//! `/config_dump` and `/metrics`; the log tailed when a test fails.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Child,
    time::Duration,
};

use anyhow::{anyhow, Context as _};
use mesh_testkit::{try_eventually, Attempt};
use serde_json::Value;

use crate::envoy::{admin_request, spawn_in, tail, WaypointNode, WAYPOINT_HTTP_PORT};

/// Overrides where the `mesh-waypoint` binary is looked for.
pub const WAYPOINT_BIN_ENV: &str = "MESH_WAYPOINT_BIN";

/// `$MESH_WAYPOINT_BIN`, else `mesh-waypoint` next to `sibling` (another
/// binary of the same target directory). `Err` says why there is none.
pub fn waypoint_bin(sibling: &Path) -> Result<PathBuf, String> {
    let path = std::env::var_os(WAYPOINT_BIN_ENV).map_or_else(
        || {
            sibling
                .parent()
                .unwrap_or(Path::new("."))
                .join("mesh-waypoint")
        },
        PathBuf::from,
    );
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "mesh-waypoint binary not found at {} (build it with `cargo build -p mesh-waypoint` \
             or set {WAYPOINT_BIN_ENV})",
            path.display()
        ))
    }
}

/// How to run one `mesh-waypoint`.
#[derive(Debug, Clone)]
pub struct WaypointSpec {
    pub node: WaypointNode,
    /// Pod service account (its identity).
    pub service_account: String,
    /// Plain xDS (`http://…:15010`).
    pub xds: SocketAddr,
    /// Admin address inside its network namespace.
    pub admin: SocketAddr,
    /// `--worker-threads`.
    pub workers: u32,
    /// Pin to this CPU with `taskset`.
    pub cpu: Option<u32>,
    /// `--log` filter.
    pub log: String,
    /// `--role gateway`: an ingress gateway (listeners from xDS) instead
    /// of a waypoint (HBONE and plain listeners of its own).
    pub gateway: bool,
    /// More flags, after the others (e.g. `--credential-dir <dir>`).
    pub extra: Vec<String>,
}

impl WaypointSpec {
    pub fn new(node: WaypointNode, service_account: &str, xds: SocketAddr) -> Self {
        Self {
            node,
            service_account: service_account.into(),
            xds,
            admin: SocketAddr::from(([127, 0, 0, 1], 15000)),
            workers: 1,
            cpu: None,
            log: "info".into(),
            gateway: false,
            extra: vec![],
        }
    }

    /// The command line (contract section 5, plus `--pod-name` for the
    /// node id).
    pub fn args(&self) -> Vec<String> {
        let n = &self.node;
        let listeners = if self.gateway {
            vec![("--role", "gateway".to_string())]
        } else {
            vec![
                ("--hbone-addr", "0.0.0.0:15008".into()),
                ("--http-addr", format!("0.0.0.0:{WAYPOINT_HTTP_PORT}")),
            ]
        };
        [
            ("--xds-addr", format!("http://{}", self.xds)),
            ("--name", n.waypoint.clone()),
            ("--namespace", n.namespace.clone()),
            ("--service-account", self.service_account.clone()),
            ("--pod-ip", n.pod_ip.to_string()),
            ("--pod-name", n.pod_name.clone()),
        ]
        .into_iter()
        .chain(listeners)
        .chain([
            ("--admin-addr", self.admin.to_string()),
            ("--worker-threads", self.workers.to_string()),
            ("--log", self.log.clone()),
        ])
        .flat_map(|(k, v)| [k.to_string(), v])
        .chain(self.extra.iter().cloned())
        .collect()
    }
}

/// A running `mesh-waypoint`; terminated on drop, its log printed when the
/// dropping thread panics.
pub struct MeshWaypoint {
    child: Child,
    pub spec: WaypointSpec,
    pub netns: Option<PathBuf>,
    pub log: PathBuf,
}

impl MeshWaypoint {
    pub fn start(
        bin: &Path,
        spec: WaypointSpec,
        netns: Option<&Path>,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("mesh-waypoint.log");
        let child = spawn_in(netns, spec.cpu, bin, &spec.args(), &log)?;
        Ok(Self {
            child,
            spec,
            netns: netns.map(Path::to_path_buf),
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        crate::cmd::terminate(&mut self.child);
    }

    pub fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        admin_request(self.netns.as_deref(), self.spec.admin, "GET", path)
    }

    /// Waits (at most `timeout`) for `/ready` 200: LDS, RDS, CDS, EDS and
    /// Address each received once.
    pub fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        try_eventually("mesh-waypoint ready", timeout, || {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Attempt::GiveUp(format!("mesh-waypoint exited ({status})"))
                }
                Err(e) => return Attempt::GiveUp(format!("mesh-waypoint: {e}")),
                Ok(None) => {}
            }
            match self.admin_get("/ready") {
                Ok((200, _)) => Attempt::Done(()),
                Ok((status, body)) => Attempt::Pending(format!("/ready: {status} {}", body.trim())),
                Err(e) => Attempt::Pending(format!("/ready: {e:#}")),
            }
        })
        .map_err(|e| anyhow!("{e}:\n{}", tail(&self.log, 40)))
    }

    /// `/config_dump` (contract section 4).
    pub fn config_dump(&self) -> anyhow::Result<Value> {
        let (status, body) = self.admin_get("/config_dump")?;
        anyhow::ensure!(
            status == 200,
            "mesh-waypoint /config_dump answered {status}: {body}"
        );
        serde_json::from_str(&body).context("mesh-waypoint /config_dump is not JSON")
    }

    /// `/metrics` (Prometheus text).
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        let (status, body) = self.admin_get("/metrics")?;
        anyhow::ensure!(status == 200, "mesh-waypoint /metrics answered {status}");
        Ok(body)
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }

    /// Route names per virtual host, from `/config_dump`.
    pub fn route_names(&self) -> anyhow::Result<std::collections::BTreeMap<String, Vec<String>>> {
        Ok(route_names_of_waypoint_dump(&self.config_dump()?))
    }
}

/// `{vhost name: [route names]}` from a mesh-waypoint `/config_dump`.
pub fn route_names_of_waypoint_dump(
    dump: &Value,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    for rc in dump["routes"].as_array().into_iter().flatten() {
        crate::envoy::add_vhost_route_names(&rc["virtual_hosts"], &mut out);
    }
    out
}

impl Drop for MeshWaypoint {
    fn drop(&mut self) {
        crate::cmd::terminate(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "mesh-waypoint log ({}):\n{}",
                self.log.display(),
                tail(&self.log, 60)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_contract() {
        let spec = WaypointSpec::new(
            WaypointNode {
                pod_ip: "10.244.1.2".parse().unwrap(),
                pod_name: "waypoint".into(),
                namespace: "default".into(),
                waypoint: "waypoint".into(),
            },
            "waypoint",
            "10.0.0.254:15010".parse().unwrap(),
        );
        let args = spec.args().join(" ");
        assert_eq!(
            args,
            "--xds-addr http://10.0.0.254:15010 --name waypoint --namespace default \
             --service-account waypoint --pod-ip 10.244.1.2 --pod-name waypoint --hbone-addr 0.0.0.0:15008 \
             --http-addr 0.0.0.0:15080 --admin-addr 127.0.0.1:15000 --worker-threads 1 --log info"
        );
        // A gateway binds what its listeners say instead.
        let gateway = WaypointSpec {
            gateway: true,
            extra: vec!["--credential-dir".into(), "/tmp/creds".into()],
            ..spec
        };
        let args = gateway.args().join(" ");
        assert!(
            args.contains("--pod-name waypoint --role gateway --admin-addr"),
            "{args}"
        );
        assert!(
            args.ends_with("--log info --credential-dir /tmp/creds"),
            "{args}"
        );
        assert!(
            !args.contains("--hbone-addr") && !args.contains("--http-addr"),
            "{args}"
        );
    }

    #[test]
    fn route_names_per_vhost() {
        let dump = serde_json::json!({"routes": [{"name": "waypoint/default/waypoint", "virtual_hosts": [
            {"name": "reviews.default.svc.cluster.local:9080", "routes": [{"name": "default/reviews/0"}, {"name": "default/reviews/1"}]},
            {"name": "productpage.default.svc.cluster.local:9080", "routes": [{"name": ""}]}]}]});
        let names = route_names_of_waypoint_dump(&dump);
        assert_eq!(
            names["reviews.default.svc.cluster.local:9080"],
            vec!["default/reviews/0", "default/reviews/1"]
        );
        assert_eq!(
            names["productpage.default.svc.cluster.local:9080"],
            vec![""]
        );
    }
}
