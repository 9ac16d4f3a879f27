//! The service graph page in a real browser: the bookinfo demo runs with a
//! user VirtualService that aborts half of `details`' requests with 500,
//! `meshctl dashboard` (started by the demo) forwards the control plane's
//! page out of the underlay namespace, traffic flows in the background,
//! and headless chromium, driven through chromedriver (WebDriver), loads
//! the page. The drawing must show the workloads, the waypoint and the
//! gateway; the canary edges of `reviews` with their configured weights
//! (80/20) and the split actually seen (within 0.15 of it); the faulted
//! edge in red (class `error`); and a lock on an mTLS edge. A screenshot
//! lands in `target/graph-page/graph.png`.
//! Needs root, chromium and chromedriver (`cargo xtask setup` installs them).
use std::{
    collections::BTreeMap,
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use mesh_lab::{demo_bookinfo, demo_ingress};
use serde_json::{json, Value};

/// Half of `details`' requests are aborted with 500 by the waypoint.
const DETAILS_FAULT: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: details
  namespace: default
spec:
  hosts:
  - details
  http:
  - fault:
      abort:
        httpStatus: 500
        percentage:
          value: 50
    route:
    - destination:
        host: details
";

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the page may take to show everything asserted.
const PAGE_DEADLINE: Duration = Duration::from_secs(180);
/// Traffic runs at most this long (each round is bounded by
/// `traffic_round`), with a pause between rounds.
const TRAFFIC_DEADLINE: Duration = Duration::from_secs(240);
const ROUND_PAUSE: Duration = Duration::from_millis(500);

/// `target/debug`: the test binary is `target/debug/deps/<name>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// `target/graph-page`: the screenshot and the browser's logs.
fn output_dir() -> PathBuf {
    let dir = profile_dir().parent().unwrap().join("graph-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver on a free loopback port, in a process group of its own
/// (the browsers it starts join it); the group is killed and the browser
/// profile removed on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl ChromeDriver {
    fn start(out: &Path) -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let profile =
            std::env::temp_dir().join(format!("graph-page-chromium-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let log = std::fs::File::create(out.join("chromedriver.log")).unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {CHROMEDRIVER} (cargo xtask setup installs it): {e}")
            });
        let driver = ChromeDriver {
            child,
            port,
            profile,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not listen on 127.0.0.1:{port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    /// Headless chromium with a fresh profile and nothing phoning home.
    fn capabilities(&self) -> serde_json::Map<String, Value> {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    "--window-size=1700,1000",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            },
        });
        caps.as_object().unwrap().clone()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What the page drew, read from its DOM.
const READ_PAGE: &str = r#"
const all = (s) => Array.from(document.querySelectorAll(s));
return {
  nodes: all("g.node").map((g) => ({ id: g.dataset.nodeId, kind: g.dataset.kind })),
  edges: all("g.edge").map((g) => ({
    id: g.dataset.edgeId,
    source: g.dataset.source,
    target: g.dataset.target,
    classes: g.getAttribute("class"),
    weight: g.dataset.configuredWeight,
    share: g.dataset.observedShare,
    error_rate: g.dataset.errorRate,
    lock: g.querySelector(".lock") !== null,
    label: (g.querySelector(".edge-label") || { textContent: "" }).textContent,
  })),
  status: (document.getElementById("status") || { textContent: "" }).textContent,
};
"#;

/// Everything asserted, checked against one reading of the page; the
/// first unmet expectation, or `None`.
fn unmet(page: &Value) -> Option<String> {
    let nodes = page["nodes"].as_array()?;
    let edges = page["edges"].as_array()?;
    let has_node = |id: &str, kind: &str| nodes.iter().any(|n| n["id"] == id && n["kind"] == kind);
    let mut wanted: Vec<(String, &str)> =
        ["productpage-v1", "reviews-v1", "reviews-v2", "reviews-v3"]
            .iter()
            .map(|w| (format!("workload:default/{w}"), "workload"))
            .collect();
    wanted.push(("waypoint:default/waypoint".into(), "waypoint"));
    for (id, kind) in &wanted {
        if !has_node(id, kind) {
            return Some(format!("no {kind} node {id}"));
        }
    }
    // The gateway's pod may sit in a namespace of its own.
    let gateway = format!("/{}", demo_ingress::GATEWAY);
    if !nodes
        .iter()
        .any(|n| n["kind"] == "gateway" && n["id"].as_str().unwrap_or("").ends_with(&gateway))
    {
        return Some(format!("no gateway node for {}", demo_ingress::GATEWAY));
    }
    for (version, weight, share) in [("v1", "80", 0.8), ("v2", "20", 0.2)] {
        let target = format!("workload:default/reviews-{version}");
        let Some(e) = edges
            .iter()
            .find(|e| e["source"] == "service:default/reviews" && e["target"] == target.as_str())
        else {
            return Some(format!("no edge service:default/reviews -> {target}"));
        };
        if e["weight"] != weight {
            return Some(format!(
                "reviews -> {version}: configured weight {} (want {weight})",
                e["weight"]
            ));
        }
        let seen: f64 = e["share"]
            .as_str()
            .unwrap_or("")
            .parse()
            .unwrap_or(f64::NAN);
        // NaN (no share drawn) fails too.
        if seen.is_nan() || (seen - share).abs() > 0.15 {
            return Some(format!(
                "reviews -> {version}: observed share {seen} (want {share} ± 0.15)"
            ));
        }
        let label = e["label"].as_str().unwrap_or("");
        if !label.contains(&format!("weight {weight}%")) || !label.contains("seen ") {
            return Some(format!(
                "reviews -> {version}: label {label:?} lacks the split"
            ));
        }
    }
    let into_details: Vec<&Value> = edges
        .iter()
        .filter(|e| e["target"] == "service:default/details")
        .collect();
    if into_details.is_empty() {
        return Some("no edge into service:default/details".into());
    }
    if !into_details.iter().any(|e| {
        let classes = e["classes"].as_str().unwrap_or("");
        let rate: f64 = e["error_rate"]
            .as_str()
            .unwrap_or("")
            .parse()
            .unwrap_or(0.0);
        classes.split(' ').any(|c| c == "error")
            && rate > 0.0
            && e["label"].as_str().unwrap_or("").contains("% err")
    }) {
        return Some(format!(
            "no edge into details is drawn as failing: {into_details:?}"
        ));
    }
    // Healthy edges are not drawn red.
    if let Some(e) = edges.iter().find(|e| {
        e["target"] == "workload:default/reviews-v1"
            && e["classes"]
                .as_str()
                .unwrap_or("")
                .split(' ')
                .any(|c| c == "error")
    }) {
        return Some(format!("the healthy edge {} is drawn as failing", e["id"]));
    }
    if !edges.iter().any(|e| {
        e["classes"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .any(|c| c == "mtls")
            && e["lock"] == true
    }) {
        return Some("no mTLS edge carries the lock".into());
    }
    let status = page["status"].as_str().unwrap_or("");
    if !status.contains("source") || !status.contains("updated") {
        return Some(format!("status line {status:?}"));
    }
    None
}

/// Picks the 5-minute window in the page's selector: the page asks for
/// it at once and its status line says so.
async fn switch_window(client: &fantoccini::Client) -> Result<(), String> {
    client
        .find(fantoccini::Locator::Css("#window"))
        .await
        .map_err(|e| format!("the window selector: {e}"))?
        .select_by_value("300")
        .await
        .map_err(|e| format!("choosing the 5 m window: {e}"))?;
    let started = Instant::now();
    loop {
        let text = client
            .execute(
                "return document.getElementById('status').textContent",
                vec![],
            )
            .await
            .map_err(|e| format!("reading the status line: {e}"))?;
        let text = text.as_str().unwrap_or("").to_string();
        if text.contains("window 5 m") {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(format!("after choosing 5 m the status still says {text:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn look_at_the_page(url: &str, out: &Path) -> Result<Value, String> {
    let driver = ChromeDriver::start(out);
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(driver.capabilities())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .map_err(|e| format!("WebDriver session: {e}"))?;
    let result = async {
        client
            .goto(url)
            .await
            .map_err(|e| format!("opening {url}: {e}"))?;
        let started = Instant::now();
        // Every unmet expectation seen, with how often: the last reading
        // alone may hide what kept failing before.
        let mut misses: BTreeMap<String, u32> = BTreeMap::new();
        let (verdict, last) = loop {
            let page = client
                .execute(READ_PAGE, vec![])
                .await
                .map_err(|e| format!("reading the page: {e}"))?;
            match unmet(&page) {
                None => break (Ok(()), page),
                Some(why) if started.elapsed() > PAGE_DEADLINE => break (Err(why), page),
                Some(why) => {
                    let key: String = why.chars().take(100).collect();
                    *misses.entry(key).or_default() += 1;
                    tokio::time::sleep(Duration::from_secs(3)).await
                }
            }
        };
        if verdict.is_ok() {
            switch_window(&client).await?;
        }
        let png = client
            .screenshot()
            .await
            .map_err(|e| format!("screenshot: {e}"))?;
        let shot = out.join("graph.png");
        std::fs::write(&shot, png).map_err(|e| format!("writing {}: {e}", shot.display()))?;
        println!("screenshot: {}", shot.display());
        match verdict {
            Ok(()) => Ok(last),
            Err(why) => Err(format!(
                "after {}s the page still shows {why}; unmet before (reason: readings): \
                 {misses:#?}; last reading: {last:#}",
                PAGE_DEADLINE.as_secs()
            )),
        }
    }
    .await;
    let _ = client.close().await;
    drop(driver);
    result
}

#[test]
fn the_graph_page_shows_canary_errors_and_mtls_in_a_browser() {
    mesh_e2e::require_root();
    let out = output_dir();
    let bins = mesh_lab::binaries_in(&profile_dir()).unwrap();
    let user = BTreeMap::from([("details-fault.yaml".to_string(), DETAILS_FAULT.to_string())]);
    let demo = demo_bookinfo::start(bins, Some(&user)).unwrap();
    let url = format!("{}?namespace=default&window=60", demo.dashboard.url);
    println!("page: {url}");
    let done = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        s.spawn(|| {
            let started = Instant::now();
            while !done.load(Ordering::SeqCst) && started.elapsed() < TRAFFIC_DEADLINE {
                demo_bookinfo::traffic_round(&demo, 20);
                std::thread::sleep(ROUND_PAUSE);
            }
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seen = runtime.block_on(look_at_the_page(&url, &out));
        done.store(true, Ordering::SeqCst);
        seen
    });
    let page = seen.unwrap_or_else(|e| panic!("{e}"));
    let canary: Vec<String> = page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "service:default/reviews")
        .map(|e| format!("{} -> {}: {}", e["source"], e["target"], e["label"]))
        .collect();
    println!("canary edges as drawn:\n  {}", canary.join("\n  "));
}
