//! A real Prometheus scraping every part of the running demo mesh that
//! exports metrics: both node agents (node IPs, :15020), the waypoint and
//! the ingress gateway (their pod IPs, :15020), all at `/stats/prometheus`
//! every second. It runs in the demo's underlay network namespace (which
//! routes to the nodes and to every pod subnet) and listens on
//! `127.0.0.1:<port>` there. mesh-control serves no metrics (its admin port
//! has health, sync status and config dumps only), so it is not a target.
//!
//! The dashboards in `deploy/dashboards/` and the Kiali-style graph queries
//! are checked against this Prometheus.
use std::time::Duration;

use mesh_e2e::{
    cluster::Cluster,
    prometheus::{Prometheus, ScrapeJob},
};
use serde_json::Value;

use crate::demo_ingress;

/// The job names, as each series' `job` label carries them.
pub const AGENT_JOB: &str = "mesh-agent";
pub const WAYPOINT_JOB: &str = "mesh-waypoint";
pub const GATEWAY_JOB: &str = "mesh-gateway";

/// The metrics port of agents, waypoints and gateways (Istio's).
const METRICS_PORT: u16 = 15020;

/// The scrape jobs for the demo `c`: one per kind of component, each with
/// every instance of that kind.
pub fn scrape_jobs(c: &Cluster) -> Vec<ScrapeJob> {
    let agents: Vec<String> = (1..=c.nodes.len() as u8)
        .map(|i| format!("{}:{METRICS_PORT}", mesh_e2e::cluster::node_ip(i)))
        .collect();
    let waypoints: Vec<String> = c
        .waypoints
        .iter()
        .filter(|w| !w.spec.gateway)
        .map(|w| format!("{}:{METRICS_PORT}", w.spec.node.pod_ip))
        .collect();
    let gateway = format!("{}:{METRICS_PORT}", c.pod(demo_ingress::GATEWAY).ip);
    let job = |name: &str, targets: &[String]| ScrapeJob {
        name: name.to_string(),
        targets: targets.to_vec(),
    };
    vec![
        job(AGENT_JOB, &agents),
        job(WAYPOINT_JOB, &waypoints),
        job(GATEWAY_JOB, &[gateway]),
    ]
}

/// Starts Prometheus for the demo `c` on `127.0.0.1:<port>` in the
/// underlay namespace and waits (at most `timeout`) until every target has
/// been scraped successfully (`up == 1`).
pub fn start(c: &Cluster, port: u16, timeout: Duration) -> anyhow::Result<Prometheus> {
    let jobs = scrape_jobs(c);
    let prometheus = Prometheus::start_jobs(
        &c.underlay.path(),
        &c.cgroup.path,
        &jobs,
        port,
        &format!("{}-demo", c.prefix),
    )?;
    let expected: usize = jobs.iter().map(|j| j.targets.len()).sum();
    prometheus.wait_value("count(up == 1)", timeout, |n| n as usize == expected)?;
    Ok(prometheus)
}

/// The targets that are not up, as `job instance`: empty when every target
/// is scraped.
pub fn down_targets(prometheus: &Prometheus) -> anyhow::Result<Vec<String>> {
    Ok(prometheus
        .query("up == 0")?
        .iter()
        .map(|s| label(s, "job") + " " + &label(s, "instance"))
        .collect())
}

/// One label of a series from the query API (`""` when absent).
pub fn label(series: &Value, name: &str) -> String {
    series["metric"][name].as_str().unwrap_or("").to_string()
}
