//! The control plane's service graph data (`/graph/data`,
//! docs/contracts/graph-data.md) from real agents: pod `a` on node1 sends
//! TCP to pod `b` on node2 over HBONE, and the graph shows the edge
//! `a → b` with its bytes and mTLS — once with the numbers from a real
//! Prometheus scraping both agents (`--prometheus-url`), once with the
//! control plane scraping the agents itself (the default). Needs root and
//! Debian's `prometheus`.
use std::time::Duration;

use mesh_e2e::{
    bins::Binaries,
    cluster::{node_ip, Cluster, CONTROL_ADMIN},
    prometheus::{Prometheus, ScrapeJob},
};
use mesh_testkit::eventually;
use serde_json::Value;

const ECHO: u16 = 9080;
const BYTES: u64 = 64 * 1024;
/// Prometheus's port inside the underlay namespace.
const PROMETHEUS_PORT: u16 = 19391;
const EDGE: &str = "workload:default/a->workload:default/b";

fn cluster(tag: &str, control_args: &[&str]) -> Cluster {
    mesh_e2e::require_root();
    let mut c = Cluster::new(
        tag,
        Binaries::for_tests(env!("CARGO_BIN_EXE_podctl")),
        &[("node1", &["a"]), ("node2", &["b"])],
    )
    .unwrap();
    c.start_control(control_args).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.start_agent("node2", &[]).unwrap();
    c.serve("b", ECHO, None).unwrap();
    c.wait_ready("node1", 2, &["a"]).unwrap();
    c.wait_ready("node2", 2, &["b"]).unwrap();
    c
}

fn echo(c: &Cluster) {
    let to = c.pod("b").addr(ECHO).to_string();
    let out = c
        .client("a", &["echo", "--to", &to, "--bytes", &BYTES.to_string()])
        .unwrap();
    assert_eq!(out["received"], BYTES, "{out}");
}

fn graph_data(c: &Cluster, query: &str) -> anyhow::Result<Value> {
    let body = mesh_e2e::netns::http_get_in(
        &c.underlay.path(),
        CONTROL_ADMIN,
        &format!("/graph/data?{query}"),
    )?;
    Ok(serde_json::from_str(&body)?)
}

/// Sends traffic until the graph shows the TCP edge a → b with bytes
/// (bounded), then checks it.
fn wait_tcp_edge(c: &Cluster, source: &str) -> Value {
    let data = eventually("the TCP edge a -> b", Duration::from_secs(40), || {
        echo(c);
        let data = graph_data(c, "window=60").map_err(|e| format!("{e:#}"))?;
        let edge = data["edges"]
            .as_array()
            .and_then(|edges| edges.iter().find(|e| e["id"] == EDGE));
        match edge {
            Some(e) if e["bytes_rate"].as_f64().is_some_and(|b| b > 0.0) => Ok(data),
            _ => Err(serde_json::to_string_pretty(&data).unwrap_or_default()),
        }
    });
    assert_eq!(data["source"], source, "{data:#}");
    assert_eq!(data["window_seconds"], 60);
    let edge = data["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == EDGE)
        .unwrap();
    assert_eq!(edge["protocol"], "tcp", "{edge}");
    assert_eq!(edge["mtls"], true, "{edge}");
    assert_eq!(edge["request_rate"], Value::Null, "{edge}");
    assert_eq!(edge["source"], "workload:default/a");
    let nodes = data["nodes"].as_array().unwrap();
    let b = nodes
        .iter()
        .find(|n| n["id"] == "workload:default/b")
        .unwrap_or_else(|| panic!("node b: {data:#}"));
    assert_eq!(b["kind"], "workload");
    assert_eq!(b["namespace"], "default");
    assert!(
        data["namespaces"]
            .as_array()
            .unwrap()
            .contains(&Value::from("default")),
        "{data:#}"
    );
    // The namespace filter: nothing touches `other`.
    let other = graph_data(c, "namespace=other&window=60").unwrap();
    assert_eq!(other["edges"], Value::Array(vec![]), "{other:#}");
    data
}

#[test]
fn prometheus_source_reports_the_tcp_edge() {
    let url = format!("http://127.0.0.1:{PROMETHEUS_PORT}");
    let c = cluster("mgp", &["--prometheus-url", &url]);
    let agents = [
        format!("{}:15020", node_ip(1)),
        format!("{}:15020", node_ip(2)),
    ];
    let targets: Vec<&str> = agents.iter().map(String::as_str).collect();
    let prom = Prometheus::start_jobs(
        &c.underlay.path(),
        &c.cgroup.path,
        &[ScrapeJob::new("mesh-agent", &targets)],
        PROMETHEUS_PORT,
        &c.prefix,
    )
    .unwrap();
    prom.wait_value("count(up == 1)", Duration::from_secs(30), |n| n == 2.0)
        .unwrap();
    let data = wait_tcp_edge(&c, "prometheus");
    assert_eq!(data["errors"], Value::Array(vec![]), "{data:#}");
    // A bad parameter is a 400 that names it.
    let err = graph_data(&c, "window=5").unwrap_err();
    assert!(format!("{err:#}").contains("400"), "{err:#}");
}

#[test]
fn scrape_source_reports_the_tcp_edge() {
    let c = cluster("mgs", &["--graph-scrape-interval", "1s"]);
    let data = wait_tcp_edge(&c, "scrape");
    // Both agents were scraped without error.
    assert_eq!(data["errors"], Value::Array(vec![]), "{data:#}");
}
