//! Traces reach a real backend: the bookinfo demo runs with its ingress
//! gateway and waypoint exporting spans (OTLP over gRPC) to Arize Phoenix,
//! which runs in the underlay namespace (`10.0.0.254`, where the pods
//! already reach the control plane). Requests carry known W3C and B3
//! contexts; Phoenix's REST API must then show one span per proxy hop,
//! parented on the caller's span, with Istio's span names and tags.
//! Needs root and `cargo xtask setup` (installs Phoenix); run by
//! `cargo xtask test`, which builds the binaries first.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mesh_e2e::{
    cgroup::Cgroup,
    cluster::Cluster,
    netns::http_get_in,
    pins::{phoenix_version, PHOENIX_BIN, PHOENIX_PYTHON, PHOENIX_VERSION},
};
use mesh_lab::{demo_bookinfo, demo_ingress};
use serde_json::Value;

/// The underlay bridge address: the control plane's, reachable from pods.
const UNDERLAY_IP: [u8; 4] = [10, 0, 0, 254];
const OTLP_GRPC_PORT: u16 = 4317;
const PHOENIX_HTTP_PORT: u16 = 6006;

/// `target/debug`: the test binary is `target/debug/deps/<name>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// `phoenix serve` in a namespace, offline (no telemetry of its own, no
/// external resources), with its SQLite database in a directory of its
/// own; killed (with everything it started) and removed on drop.
struct Phoenix {
    child: Child,
    _cgroup: Cgroup,
    dir: PathBuf,
    netns: PathBuf,
    http: SocketAddr,
}

impl Phoenix {
    fn start(c: &Cluster) -> anyhow::Result<Self> {
        let installed = phoenix_version(Path::new(PHOENIX_PYTHON));
        anyhow::ensure!(
            installed.as_deref() == Some(PHOENIX_VERSION),
            "Arize Phoenix {PHOENIX_VERSION} is not installed ({installed:?}): run `cargo xtask setup`"
        );
        let dir = std::env::temp_dir().join(format!("{}-phoenix", c.prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("phoenix.log"))?;
        let netns = c.underlay.path();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg("--")
            .arg(PHOENIX_BIN)
            .arg("serve")
            .env("PHOENIX_WORKING_DIR", &dir)
            .env("PHOENIX_HOST", "0.0.0.0")
            .env("PHOENIX_PORT", PHOENIX_HTTP_PORT.to_string())
            .env("PHOENIX_GRPC_PORT", OTLP_GRPC_PORT.to_string())
            .env("PHOENIX_TELEMETRY_ENABLED", "false")
            .env("PHOENIX_ALLOW_EXTERNAL_RESOURCES", "false")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        // nsenter execs Phoenix: same pid; its cgroup takes any children.
        let cgroup = Cgroup::create(c.cgroup.path.join("phoenix"))?;
        std::fs::write(cgroup.path.join("cgroup.procs"), child.id().to_string())?;
        let mut phoenix = Phoenix {
            child,
            _cgroup: cgroup,
            dir,
            netns,
            http: SocketAddr::from((UNDERLAY_IP, PHOENIX_HTTP_PORT)),
        };
        phoenix.wait_healthy(Duration::from_secs(90))?;
        Ok(phoenix)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("phoenix.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("phoenix exited ({status}):\n{}", self.log_tail());
            }
            if http_get_in(&self.netns, self.http, "/healthz").is_ok() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                anyhow::bail!(
                    "phoenix not healthy after {timeout:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The spans Phoenix stored for `trace_id` (REST API).
    fn spans(&self, trace_id: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!("/v1/projects/default/spans?trace_id={trace_id}&limit=100");
        let body = http_get_in(&self.netns, self.http, &path)?;
        let v: Value = serde_json::from_str(&body)?;
        Ok(v["data"].as_array().cloned().unwrap_or_default())
    }

    /// Polls (at most `timeout`) until `trace_id` has `count` spans.
    fn wait_spans(&self, trace_id: &str, count: usize, timeout: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let spans = self.spans(trace_id).unwrap_or_default();
            if spans.len() >= count || started.elapsed() > timeout {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    let attrs = &span["attributes"];
    // Phoenix answers attributes as a flat map or as OTLP key/value pairs.
    if let Some(v) = attrs.get(key) {
        return v;
    }
    attrs
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map(|kv| {
            let v = &kv["value"];
            v.get("string_value").unwrap_or(v)
        })
        .unwrap_or(&Value::Null)
}

fn span_id(span: &Value) -> String {
    span["context"]["span_id"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn parent_id(span: &Value) -> String {
    span["parent_id"].as_str().unwrap_or("").to_string()
}

/// Which proxy reported the span, from its `node_id` tag.
fn hop(span: &Value) -> &'static str {
    match attr(span, "node_id").as_str().unwrap_or("") {
        n if n.starts_with("router~") => "gateway",
        n if n.starts_with("waypoint~") => "waypoint",
        _ => "other",
    }
}

/// A request from `pod` to `url` with one extra header; must answer 200.
fn call(c: &Cluster, pod: &str, url: &str, header: &str) {
    let r = c
        .client(
            pod,
            &[
                "http",
                "--url",
                url,
                "--count",
                "1",
                "--max-seconds",
                "10",
                "--header",
                header,
            ],
        )
        .unwrap_or_else(|e| panic!("{pod} → {url}: {e:#}"));
    assert_eq!(r["statuses"]["200"], 1, "{pod} → {url} with {header}: {r}");
}

fn by_hop(spans: &[Value]) -> BTreeMap<&'static str, Vec<&Value>> {
    let mut m: BTreeMap<&'static str, Vec<&Value>> = BTreeMap::new();
    for s in spans {
        m.entry(hop(s)).or_default().push(s);
    }
    m
}

#[test]
fn proxies_export_istio_spans_to_phoenix() {
    // The waypoint and the gateway read their collector from the
    // environment they inherit; set before any thread of this test starts.
    let endpoint = format!(
        "http://{}:{OTLP_GRPC_PORT}",
        std::net::Ipv4Addr::from(UNDERLAY_IP)
    );
    std::env::set_var("MESH_WAYPOINT_OTLP_ENDPOINT", &endpoint);
    let bins = mesh_lab::binaries_in(&profile_dir()).unwrap();
    let demo = demo_bookinfo::start(bins, None).expect("demo starts");
    let c: &Cluster = &demo;
    let phoenix = Phoenix::start(c).expect("phoenix starts");

    // Ingress: outside → gateway → productpage, W3C context from the client.
    let (t_in, p_in) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let gateway_url = format!("http://{}/productpage", c.pod(demo_ingress::GATEWAY).ip);
    call(
        c,
        demo_ingress::OUTSIDE,
        &gateway_url,
        &format!("traceparent: 00-{t_in}-{p_in}-01"),
    );
    // East-west through the waypoint: productpage → reviews, W3C.
    let (t_wp, p_wp) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let reviews = "http://10.96.1.12:9080/reviews/1";
    call(
        c,
        "productpage-v1",
        reviews,
        &format!("traceparent: 00-{t_wp}-{p_wp}-01"),
    );
    // The same call with a B3-only (single header) context.
    let (t_b3, p_b3) = ("80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1");
    call(
        c,
        "productpage-v1",
        reviews,
        &format!("b3: {t_b3}-{p_b3}-1"),
    );

    let wait = Duration::from_secs(60);
    let show = |spans: &[Value]| serde_json::to_string_pretty(spans).unwrap();

    // Ingress trace: one gateway span, child of the client's span; a
    // waypoint hop behind it (if the gateway's route crosses one) is the
    // gateway span's child.
    let spans = phoenix.wait_spans(t_in, 1, wait);
    eprintln!("ingress trace in Phoenix: {}", show(&spans));
    let hops = by_hop(&spans);
    let gw = hops.get("gateway").map(Vec::as_slice).unwrap_or_default();
    assert_eq!(
        gw.len(),
        1,
        "one gateway span in trace {t_in}: {}",
        show(&spans)
    );
    let gw = gw[0];
    assert_eq!(
        parent_id(gw),
        p_in,
        "gateway span's parent: {}",
        show(&spans)
    );
    assert_eq!(gw["name"], "productpage.default.svc.cluster.local:9080/*");
    assert_eq!(gw["context"]["trace_id"], t_in);
    assert_eq!(attr(gw, "component"), "proxy");
    assert_eq!(attr(gw, "http.method"), "GET");
    assert_eq!(attr(gw, "http.status_code"), "200");
    assert_eq!(attr(gw, "response_flags"), "-");
    assert_eq!(attr(gw, "istio.canonical_service"), demo_ingress::GATEWAY);
    assert_eq!(attr(gw, "istio.mesh_id"), "cluster.local");
    assert_eq!(
        attr(gw, "peer.address").as_str(),
        Some(c.pod(demo_ingress::OUTSIDE).ip.to_string().as_str())
    );
    let cluster = attr(gw, "upstream_cluster").as_str().unwrap_or("");
    assert!(
        cluster.starts_with("outbound|9080|")
            && cluster.ends_with("productpage.default.svc.cluster.local"),
        "upstream_cluster {cluster:?}"
    );
    for wp in hops.get("waypoint").map(Vec::as_slice).unwrap_or_default() {
        assert_eq!(parent_id(wp), span_id(gw), "{}", show(&spans));
    }
    assert!(!hops.contains_key("other"), "{}", show(&spans));

    // Waypoint traces: exactly one waypoint span each, child of the
    // caller's W3C or B3 span.
    for (trace, parent) in [(t_wp, p_wp), (t_b3, p_b3)] {
        let spans = phoenix.wait_spans(trace, 1, wait);
        assert_eq!(spans.len(), 1, "trace {trace}: {}", show(&spans));
        let wp = &spans[0];
        assert_eq!(hop(wp), "waypoint", "{}", show(&spans));
        assert_eq!(parent_id(wp), parent, "{}", show(&spans));
        assert_eq!(wp["name"], "reviews.default.svc.cluster.local:9080/*");
        assert_eq!(attr(wp, "istio.canonical_service"), "waypoint");
        assert_eq!(attr(wp, "istio.namespace"), "default");
        assert_eq!(
            attr(wp, "http.url"),
            "http://reviews.default.svc.cluster.local:9080/reviews/1"
        );
        assert_eq!(attr(wp, "http.status_code"), "200");
    }
    drop(phoenix);
    drop(demo);
}
