//! `cargo xtask demo`: a bookinfo-like mesh behind a waypoint, on this host.
//!
//! Two nodes (network namespaces with their own mesh-agent), one control
//! plane fed by the YAML in `xtask/lab/demo/bookinfo/` (and `--config
//! <dir>` over it, see [`crate::demo_config`]), and a `mesh-waypoint` that
//! every service of namespace `default` uses
//! (`istio.io/use-waypoint: waypoint`). Pods are network namespaces named
//! after the pod, every pod runs `podhttp` (replies name pod and version),
//! and service names resolve inside them, so
//! `ip netns exec sleep curl http://reviews:9080/` works from a shell.
//! An ingress gateway on node1 serves bookinfo over HTTP and HTTPS to
//! `outside`, a pod outside the mesh (see [`crate::demo_ingress`]).
//! A ServiceEntry makes `httpbin.external.demo`, served from a namespace
//! outside the mesh, reachable by name from the pods through the agents
//! (see [`crate::demo_egress`]).
//! A live summary shows which versions answered, per call.
use std::{
    collections::BTreeMap,
    ops::{Deref, DerefMut},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use mesh_e2e::{cluster::Cluster, Binaries};
use serde_json::Value;

use crate::{demo_config, demo_dashboard, demo_egress, demo_guide, demo_ingress, step};

const PORT: u16 = 9080;

/// The embedded default configuration (`xtask/lab/demo/bookinfo/`).
const DEFAULTS: &[(&str, &str)] = &[
    (
        "10-services.yaml",
        include_str!("../demo/bookinfo/10-services.yaml"),
    ),
    (
        "20-destination-rules.yaml",
        include_str!("../demo/bookinfo/20-destination-rules.yaml"),
    ),
    (
        "30-virtual-services.yaml",
        include_str!("../demo/bookinfo/30-virtual-services.yaml"),
    ),
    (
        "40-ingress.yaml",
        include_str!("../demo/bookinfo/40-ingress.yaml"),
    ),
    (
        "50-egress.yaml",
        include_str!("../demo/bookinfo/50-egress.yaml"),
    ),
];

/// (pod, app, version) per node.
const NODE1: &[(&str, &str, &str)] = &[
    ("sleep", "sleep", "v1"),
    ("productpage-v1", "productpage", "v1"),
    ("details-v1", "details", "v1"),
];
const NODE2: &[(&str, &str, &str)] = &[
    ("waypoint", "waypoint", "v1"),
    ("reviews-v1", "reviews", "v1"),
    ("reviews-v2", "reviews", "v2"),
    ("reviews-v3", "reviews", "v3"),
    ("ratings-v1", "ratings", "v1"),
];

const SERVICES: &[(&str, &str)] = &[
    ("productpage", "10.96.1.10"),
    ("details", "10.96.1.11"),
    ("reviews", "10.96.1.12"),
    ("ratings", "10.96.1.13"),
];

pub fn run(duration: Option<u64>, config: Option<&Path>) -> anyhow::Result<()> {
    crate::require_root("cargo xtask demo")?;
    let user_files = config.map(demo_config::read_dir_yaml).transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    let c = start(crate::binaries()?, user_files.as_ref())?;
    demo_guide::print_intro(
        &c,
        &demo_guide::bookinfo(&c),
        Some(&c.dashboard.url),
        duration,
    );

    let started = Instant::now();
    while !stop.load(Ordering::SeqCst)
        && duration.is_none_or(|d| started.elapsed() < Duration::from_secs(d))
    {
        let t = started.elapsed().as_secs();
        for call in traffic_round(&c, 20) {
            match &call.result {
                Ok(r) => println!(
                    "[{t:>4}s] {:<15} -> {:<38} {:<18} {}",
                    call.pod,
                    format!(
                        "{}{}",
                        call.url,
                        call.header.map(|h| format!(" ({h})")).unwrap_or_default()
                    )
                    .trim_start_matches("http://"),
                    summary(&r["statuses"]),
                    summary(&r["versions"]),
                ),
                Err(e) => println!("[{t:>4}s] {} -> {} failed: {e:#}", call.pod, call.url),
            }
        }
        for _ in 0..30 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    step("what the waypoint reported (istio_requests_total, reporter=\"waypoint\")");
    let text = c.waypoints[0].metrics_text().unwrap_or_default();
    for line in text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
    {
        println!("  {}", short_metric(line));
    }
    step(
        "tearing down (waypoint, gateway, agents, control plane, pods, namespaces, cgroups, pins)",
    );
    drop(c);
    step("done: nothing left behind");
    Ok(())
}

/// The demo mesh and the external namespace its egress reaches; it reads
/// as the [`Cluster`]. Field order is teardown order.
pub struct Demo {
    /// `meshctl dashboard`: the service graph page on the host.
    pub dashboard: demo_dashboard::Dashboard,
    /// `meshctl port-forward`: the ingress gateway on the host's loopback.
    pub ingress: demo_ingress::PortForward,
    pub external: demo_egress::External,
    pub cluster: Cluster,
}

impl Deref for Demo {
    type Target = Cluster;

    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl DerefMut for Demo {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

/// The demo mesh, running: two nodes, the control plane with the defaults
/// (and `user` files over them), the external namespace, both agents,
/// every app pod serving, and the waypoint, and the ingress gateway, and
/// the service graph's and the gateway's forwarders.
/// Dropping it tears everything down.
pub fn start(bins: Binaries, user: Option<&BTreeMap<String, String>>) -> anyhow::Result<Demo> {
    step("creating two nodes; pods are network namespaces named after the pod");
    let pods1: Vec<&str> = NODE1
        .iter()
        .map(|p| p.0)
        .chain([demo_ingress::GATEWAY, demo_ingress::OUTSIDE])
        .collect();
    let pods2: Vec<&str> = NODE2.iter().map(|p| p.0).collect();
    let mut c = Cluster::for_people("mdemo", bins, &[("node1", &pods1), ("node2", &pods2)])?;
    for (pod, app, version) in NODE1.iter().chain(NODE2) {
        c.label_pod(pod, &[("app", app), ("version", version)])?;
    }
    demo_ingress::label_pods(&mut c)?;
    c.declare_waypoint("waypoint", "waypoint")?;
    c.label_namespace("istio.io/use-waypoint", "waypoint")?;
    let empty = BTreeMap::new();
    let user = user.unwrap_or(&empty);
    let demo_config::Merged { defaults, replaced } = demo_config::merge(DEFAULTS, user);
    for (file, yaml) in &defaults {
        c.write_config(file, yaml)?;
    }
    for (name, yaml) in user {
        c.write_config(&format!("50-user-{name}"), yaml)?;
    }
    if !user.is_empty() {
        println!(
            "  applied {} file(s) from --config over the defaults",
            user.len()
        );
    }
    for (key, file) in &replaced {
        println!("  --config replaces the default {key} (from {file})");
    }
    let names: Vec<(&str, &str, std::net::IpAddr)> = SERVICES
        .iter()
        .map(|(n, ip)| Ok((*n, "default", ip.parse()?)))
        .collect::<anyhow::Result<_>>()?;
    c.resolve_services(&names)?;
    demo_egress::write_resolv_conf(&c)?;
    step(format!(
        "starting dnsmasq and an HTTP server for {} in `external`, a namespace outside the mesh ({})",
        demo_egress::HOST,
        demo_egress::EXTERNAL_IP
    ));
    let external = demo_egress::start(&c)?;

    step("starting mesh-control (YAML directory, CA, Delta ADS incl. Envoy LDS/RDS/CDS/EDS)");
    c.start_control(&[])?;
    step("starting mesh-agent on both nodes (eBPF at the cgroup root, HBONE :15008, DNS :15053)");
    let dns_upstream = demo_egress::agent_args();
    let dns_upstream: Vec<&str> = dns_upstream.iter().map(String::as_str).collect();
    c.start_agent("node1", &dns_upstream)?;
    c.start_agent("node2", &dns_upstream)?;
    for (pod, _, version) in NODE1.iter().chain(NODE2).filter(|p| p.0 != "waypoint") {
        c.serve_http(pod, version, PORT, &[])?;
    }
    step("starting mesh-waypoint in pod `waypoint` (HBONE :15008, admin 127.0.0.1:15000)");
    c.start_waypoint("waypoint", "waypoint")?;
    step(format!(
        "starting mesh-waypoint --role gateway in pod `{}` (HTTP :80, HTTPS :443 for {})",
        demo_ingress::GATEWAY,
        demo_ingress::HOST
    ));
    demo_ingress::start_gateway(&mut c)?;
    step(format!(
        "starting meshctl dashboard: the control plane's service graph on 127.0.0.1:{}",
        demo_dashboard::PORT
    ));
    let dashboard = demo_dashboard::Dashboard::start(&c, demo_dashboard::PORT)?;
    step(format!(
        "starting meshctl port-forward: the ingress gateway on 127.0.0.1:{} (HTTP) and :{} (HTTPS)",
        demo_ingress::HOST_HTTP_PORT,
        demo_ingress::HOST_HTTPS_PORT
    ));
    let ingress = demo_ingress::PortForward::start(&c)?;
    Ok(Demo {
        dashboard,
        ingress,
        external,
        cluster: c,
    })
}

/// One call of the demo's traffic: `count` requests from `pod` to `url`.
pub struct Call {
    pub pod: &'static str,
    pub url: String,
    /// An extra request header, `name: value`.
    pub header: Option<&'static str>,
    /// `podctl http`'s report (`statuses`, `versions`).
    pub result: anyhow::Result<Value>,
}

/// One round of the demo's traffic, `count` requests per call (each call
/// bounded to 10 s): an outside client through the ingress gateway, sleep
/// to productpage, productpage to reviews (the canary, and jason's v3),
/// productpage to details, reviews-v2 to ratings.
pub fn traffic_round(c: &Cluster, count: u32) -> Vec<Call> {
    let ingress_url = format!("http://{}/productpage", c.pod(demo_ingress::GATEWAY).ip);
    let calls: [(&'static str, String, Option<&'static str>); 6] = [
        ("sleep", "http://10.96.1.10:9080/productpage".into(), None),
        (
            "productpage-v1",
            "http://10.96.1.12:9080/reviews/1".into(),
            None,
        ),
        (
            "productpage-v1",
            "http://10.96.1.12:9080/reviews/1".into(),
            Some("end-user: jason"),
        ),
        (
            "productpage-v1",
            "http://10.96.1.11:9080/details/1".into(),
            None,
        ),
        (
            "reviews-v2",
            "http://10.96.1.13:9080/ratings/1".into(),
            None,
        ),
        (demo_ingress::OUTSIDE, ingress_url, None),
    ];
    let count = count.to_string();
    calls
        .into_iter()
        .map(|(pod, url, header)| {
            let mut args = vec![
                "http",
                "--url",
                &url,
                "--count",
                &count,
                "--max-seconds",
                "10",
            ];
            if let Some(h) = header {
                args.extend_from_slice(&["--header", h]);
            }
            let result = c.client(pod, &args);
            Call {
                pod,
                url: url.clone(),
                header,
                result,
            }
        })
        .collect()
}

/// `{"v1": 16, "v2": 4}` → `v1:16 v2:4`.
fn summary(map: &Value) -> String {
    map.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Keeps the labels a person reads first.
fn short_metric(line: &str) -> String {
    let Some((labels, value)) = line.rsplit_once(' ') else {
        return line.to_string();
    };
    let keep = [
        "source_workload=",
        "destination_service_name=",
        "destination_version=",
        "response_code=",
        "response_flags=",
    ];
    let picked: Vec<&str> = labels
        .trim_start_matches("istio_requests_total{")
        .trim_end_matches('}')
        .split(',')
        .filter(|l| keep.iter().any(|k| l.starts_with(k)))
        .collect();
    format!("istio_requests_total{{{}}} {value}", picked.join(","))
}
