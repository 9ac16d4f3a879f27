//! The Grafana dashboards in `deploy/dashboards/` work on the mesh's own
//! metrics: each file is a well-formed Grafana dashboard, and on the running
//! demo mesh, scraped by a real Prometheus, every target of every panel
//! (its template variables set to demo values) returns at least one series,
//! and every template variable offers the demo's value. The queries Kiali's
//! graph runs find the demo's edges ([`kiali`]). A failure names the
//! dashboard and the panel. Needs root and Debian's `prometheus`; run by
//! `cargo xtask test`, which builds the binaries first.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use mesh_e2e::{cluster::Cluster, prometheus::Prometheus};
use mesh_lab::{demo_bookinfo, demo_prometheus};
use serde_json::Value;

#[path = "dashboards/kiali.rs"]
mod kiali;

/// `target/debug`: the test binary is `target/debug/deps/<name>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/dashboards")
}

/// The dashboards, by file name, in name order.
fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect()
}

/// Each template variable's demo value, and Grafana's interval and range
/// variables as a person would see them with a 1 s scrape.
const SUBSTITUTIONS: &[(&str, &str)] = &[
    ("$__rate_interval", "30s"),
    ("$__interval", "15s"),
    ("$__range", "5m"),
    ("$namespace", "default"),
    ("$service", "reviews.default.svc.cluster.local"),
    // reviews-v2 both serves (productpage → reviews) and calls (→ ratings).
    ("$workload", "reviews-v2"),
    ("$instance", ".*"),
];

/// `expr` with every variable replaced; `Err` names a variable left over.
fn substitute(expr: &str) -> Result<String, String> {
    let mut out = expr.to_string();
    for (var, value) in SUBSTITUTIONS {
        out = out.replace(var, value);
    }
    match out.find('$') {
        Some(at) => Err(format!("unknown variable at `{}`", &out[at..])),
        None => Ok(out),
    }
}

/// One query a panel runs.
struct PanelQuery {
    dashboard: String,
    panel: String,
    expr: String,
}

impl std::fmt::Display for PanelQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} / {:?}: {}", self.dashboard, self.panel, self.expr)
    }
}

/// Every target of every (non-row) panel, rows' nested panels included.
fn panel_queries(file: &str, dashboard: &Value) -> Vec<PanelQuery> {
    let title = dashboard["title"].as_str().unwrap_or(file).to_string();
    all_panels(dashboard)
        .into_iter()
        .flat_map(|p| {
            let panel = p["title"].as_str().unwrap_or("").to_string();
            let title = title.clone();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| PanelQuery {
                    dashboard: title.clone(),
                    panel: panel.clone(),
                    expr: t["expr"].as_str().unwrap_or("").to_string(),
                })
        })
        .collect()
}

fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let top = dashboard["panels"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    top.iter()
        .flat_map(|p| {
            let nested = p["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            std::iter::once(p).chain(nested.iter())
        })
        .collect()
}

/// What is wrong with `dashboard` as a Grafana dashboard (empty: nothing).
fn structure_problems(file: &str, d: &Value) -> Vec<String> {
    let mut problems = vec![];
    let mut bad = |what: String| problems.push(format!("{file}: {what}"));
    for field in ["uid", "title"] {
        if d[field].as_str().is_none_or(str::is_empty) {
            bad(format!("no `{field}`"));
        }
    }
    if d["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        bad(format!("schemaVersion {} (want ≥ 36)", d["schemaVersion"]));
    }
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var_names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    if !vars.iter().any(|v| {
        v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
    }) {
        bad("no Prometheus `datasource` variable".into());
    }
    let panels = all_panels(d);
    if panels.iter().all(|p| p["type"] == "row") {
        bad("no panels".into());
    }
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("");
        let id = p["id"].as_u64();
        if !id.is_some_and(|id| ids.insert(id)) {
            bad(format!(
                "panel {title:?}: id {} missing or repeated",
                p["id"]
            ));
        }
        if title.is_empty() {
            bad(format!("panel {}: no title", p["id"]));
        }
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64(), g["w"].as_u64());
        let fits = matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24);
        if !fits || g["h"].as_u64().is_none_or(|h| h == 0) || g["y"].as_u64().is_none() {
            bad(format!(
                "panel {title:?}: gridPos {g} does not fit a 24-column grid"
            ));
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != "${datasource}" {
            bad(format!(
                "panel {title:?}: datasource is not ${{datasource}}"
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            bad(format!("panel {title:?}: no targets"));
        }
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            if expr.trim().is_empty() {
                bad(format!("panel {title:?}: a target without `expr`"));
            }
            for var in variables_in(expr) {
                if !var.starts_with("__") && !var_names.contains(var.as_str()) {
                    bad(format!(
                        "panel {title:?}: uses ${var}, which is not defined"
                    ));
                }
            }
        }
    }
    problems
}

/// The `$name` variables an expression uses.
fn variables_in(expr: &str) -> Vec<String> {
    expr.split('$')
        .skip(1)
        .map(|rest| {
            rest.trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_dashboard_is_a_well_formed_grafana_dashboard() {
    let dashboards = dashboards();
    let names: Vec<&str> = dashboards.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "mesh-overview.json",
            "node-agent.json",
            "service.json",
            "waypoint.json",
            "workload.json"
        ]
    );
    let problems: Vec<String> = dashboards
        .iter()
        .flat_map(|(f, d)| structure_problems(f, d))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let uids: BTreeSet<&str> = dashboards
        .iter()
        .filter_map(|(_, d)| d["uid"].as_str())
        .collect();
    assert_eq!(uids.len(), dashboards.len(), "dashboard uids repeat");
}

#[test]
fn the_structure_check_catches_a_broken_dashboard() {
    let (file, mut d) = dashboards().remove(0);
    let panels = d["panels"].as_array_mut().unwrap();
    panels[1]["id"] = panels[2]["id"].clone();
    panels[2]["gridPos"]["x"] = 20.into();
    panels[3]["targets"][0]["expr"] = "rate(x[$nope])".into();
    let problems = structure_problems(&file, &d).join("\n");
    for expected in ["repeated", "24-column", "$nope"] {
        assert!(problems.contains(expected), "{expected}: {problems}");
    }
}

/// The demo's traffic plus the events the waypoint and agent panels show:
/// a burst that overflows ratings' connection pool, 5xx answers that
/// eject its endpoint, and DNS lookups answered by the agent.
fn drive_traffic(c: &Cluster) -> Vec<String> {
    let mut failed = vec![];
    for round in 0..3 {
        // A counter's first sample is its baseline: rates (and Kiali's
        // `> 0`) need traffic in later scrapes too (1 s apart).
        if round > 0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        for call in demo_bookinfo::traffic_round(c, 10) {
            if let Err(e) = call.result {
                failed.push(format!("{} -> {}: {e:#}", call.pod, call.url));
            }
        }
    }
    let getent = std::process::Command::new("ip")
        .args(["netns", "exec", &c.pod("sleep").netns.name])
        .args(["getent", "hosts", "httpbin.external.demo"])
        .output();
    match getent {
        Ok(out) if out.status.success() => {}
        other => failed.push(format!("DNS lookup from sleep: {other:?}")),
    }
    // ratings allows 10 connections and 10 pending requests.
    let burst = c.client(
        "productpage-v1",
        &[
            "http",
            "--url",
            "http://10.96.1.13:9080/ratings/1?delay_ms=300",
            "--count",
            "60",
            "--concurrency",
            "40",
            "--max-seconds",
            "20",
        ],
    );
    match &burst {
        Ok(r) => println!("burst to ratings: {}", r["statuses"]),
        Err(e) => failed.push(format!("burst to ratings: {e:#}")),
    }
    // Three consecutive 5xx eject ratings' endpoint.
    let errors = c.client(
        "productpage-v1",
        &[
            "http",
            "--url",
            "http://10.96.1.13:9080/ratings/1?status=500",
            "--count",
            "6",
            "--max-seconds",
            "20",
        ],
    );
    match &errors {
        Ok(r) => println!("5xx to ratings: {}", r["statuses"]),
        Err(e) => failed.push(format!("5xx to ratings: {e:#}")),
    }
    failed
}

/// Polls every query (at most `timeout` in all) until each returns a
/// series; the ones that never did, with the last error.
fn queries_without_series(
    prometheus: &Prometheus,
    queries: Vec<PanelQuery>,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<(PanelQuery, String)> = queries
        .into_iter()
        .map(|q| (q, "not run".to_string()))
        .collect();
    loop {
        pending.retain_mut(|(q, last)| {
            let expr = match substitute(&q.expr) {
                Ok(e) => e,
                Err(e) => {
                    *last = e;
                    return true;
                }
            };
            match prometheus.query(&expr) {
                Ok(series) if !series.is_empty() => false,
                Ok(_) => {
                    *last = "no series".into();
                    true
                }
                Err(e) => {
                    *last = format!("{e:#}");
                    true
                }
            }
        });
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    pending
        .into_iter()
        .map(|(q, last)| format!("{q}\n    -> {last}"))
        .collect()
}

/// `label_values(<selector>, <label>)` → `count by (<label>) (<selector>)`.
fn label_values_query(query: &str) -> Option<(String, String)> {
    let inner = query.strip_prefix("label_values(")?.strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    let label = label.trim().to_string();
    Some((format!("count by ({label}) ({})", selector.trim()), label))
}

/// Each query variable offers the value the panels were checked with.
fn variables_without_demo_value(
    prometheus: &Prometheus,
    dashboards: &[(String, Value)],
) -> Vec<String> {
    let mut failed = vec![];
    for (file, d) in dashboards {
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            let name = v["name"].as_str().unwrap_or("");
            let definition = v["definition"].as_str().unwrap_or("");
            let Some((promql, label)) = label_values_query(definition) else {
                failed.push(format!(
                    "{file}: variable {name}: not label_values(…): {definition}"
                ));
                continue;
            };
            let want = SUBSTITUTIONS
                .iter()
                .find(|(var, _)| var.strip_prefix('$') == Some(name))
                .map(|(_, value)| *value);
            let offered: Vec<String> = substitute(&promql)
                .map_err(anyhow::Error::msg)
                .and_then(|q| prometheus.query(&q))
                .map(|series| {
                    series
                        .iter()
                        .map(|s| demo_prometheus::label(s, &label))
                        .collect()
                })
                .unwrap_or_default();
            let ok = match want {
                Some(".*") => !offered.is_empty(),
                Some(value) => offered.iter().any(|o| o == value),
                None => false,
            };
            if !ok {
                failed.push(format!(
                    "{file}: variable {name} ({definition}) offers {offered:?}, not the demo's {want:?}"
                ));
            }
        }
    }
    failed
}

/// The demo names pod namespaces plainly (`sleep`, …) and removes stale
/// ones of those names when it starts: waits (bounded) while another run's
/// demo holds them, so the two do not tear each other's pods down.
fn wait_for_no_other_demo() {
    let deadline = Instant::now() + Duration::from_secs(300);
    let taken = || {
        ["sleep", "waypoint", "ratings-v1", "istio-ingressgateway"]
            .iter()
            .any(|pod| Path::new("/run/netns").join(pod).exists())
    };
    while taken() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn every_dashboard_panel_and_kiali_graph_query_finds_the_demo_traffic() {
    mesh_e2e::require_root();
    wait_for_no_other_demo();
    let bins = mesh_lab::binaries_in(&profile_dir()).unwrap();
    let c = demo_bookinfo::start(bins, None).unwrap();
    let prometheus = demo_prometheus::start(&c, 9090, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("Prometheus scraping the demo: {e:#}"));
    let mut failed = drive_traffic(&c);
    // Kiali's rates look at the last minute: first, while it is fresh.
    failed.extend(kiali::missing_edges(&prometheus, Duration::from_secs(20)));
    let dashboards = dashboards();
    let mut queries = vec![];
    println!("dashboard → panels:");
    for (file, d) in &dashboards {
        let panels = all_panels(d).iter().filter(|p| p["type"] != "row").count();
        let q = panel_queries(file, d);
        println!("  {file:<20} {panels:>3} panels, {:>3} queries", q.len());
        queries.extend(q);
    }
    let total = queries.len();
    let empty = queries_without_series(&prometheus, queries, Duration::from_secs(30));
    println!(
        "{} of {total} panel queries return series",
        total - empty.len()
    );
    failed.extend(
        empty
            .into_iter()
            .map(|e| format!("panel query without series: {e}")),
    );
    failed.extend(variables_without_demo_value(&prometheus, &dashboards));
    failed.extend(
        demo_prometheus::down_targets(&prometheus)
            .unwrap_or_default()
            .into_iter()
            .map(|t| format!("scrape target down: {t}")),
    );
    drop(prometheus);
    drop(c);
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
