//! `cargo xtask demo`: two nodes on this host, each a network namespace with
//! its own mesh-agent, one control plane fed by a YAML directory.
//! `productpage` (node1) calls `reviews` (node2) over HBONE mTLS and
//! `details` (node1) locally; `legacy` (node2) is not enrolled and talks
//! plaintext. An AuthorizationPolicy lets only `reviews` reach `ratings`
//! (productpage's attempt is refused by node2's agent) and a DENY keeps
//! productpage off reviews' admin port 9081 (refused in node1's kernel at
//! connect()). A live summary shows, per connection, the route and the
//! SPIFFE identities on both ends, then the Istio metrics it produced.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use mesh_e2e::{cluster::Cluster, Binaries};
use serde_json::Value;

use crate::{demo_guide, step};

const PORT: u16 = 9080;
const ADMIN_PORT: u16 = 9081;

const POLICIES: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-from-reviews
  namespace: default
spec:
  selector:
    matchLabels:
      app: ratings
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/default/sa/reviews\"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: no-admin-from-productpage
  namespace: default
spec:
  selector:
    matchLabels:
      app: reviews
  action: DENY
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/default/sa/productpage\"]
    to:
    - operation:
        ports: [\"9081\"]
";

fn short(identity: &Value) -> String {
    identity
        .as_str()
        .filter(|s| !s.is_empty())
        .map_or("-".into(), |s| {
            s.rsplit_once("/sa/")
                .map_or(s.to_string(), |(_, sa)| format!("sa/{sa}"))
        })
}

pub fn run(duration: Option<u64>) -> anyhow::Result<()> {
    crate::require_root("cargo xtask demo --l4")?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    let c = start(crate::binaries()?)?;
    demo_guide::print_intro(&c, &demo_guide::l4(&c), None, duration);

    let reviews = c.pod("reviews").addr(PORT).to_string();
    let details = c.pod("details").addr(PORT).to_string();
    let ratings = c.pod("ratings").addr(PORT).to_string();
    let reviews_admin = c.pod("reviews").addr(ADMIN_PORT).to_string();
    // The kernel's deny entries follow enrolment and xDS within a second
    // or two; wait for them so the first round already shows EPERM. The
    // demo runs on when they are late: this wait only spares its first round.
    let _ = mesh_testkit::try_eventually(
        "node1's kernel deny entries",
        Duration::from_secs(15),
        || {
            c.agent("node1")
                .mesh()
                .map_or(0, |m| m["kernel_denies"].as_array().map_or(0, Vec::len))
                > 0
        },
    );
    let started = Instant::now();
    let mut last_ids = [0u64; 2];
    while !stop.load(Ordering::SeqCst)
        && duration.is_none_or(|d| started.elapsed() < Duration::from_secs(d))
    {
        let calls = [
            ("productpage", reviews.as_str()),
            ("productpage", details.as_str()),
            ("legacy", reviews.as_str()),
            ("reviews", ratings.as_str()),
        ];
        for (pod, dst) in calls {
            if let Err(e) = c.client(pod, &["echo", "--to", dst, "--bytes", "65536"]) {
                println!("  {pod} -> {dst} failed: {e:#}");
            }
        }
        for (pod, dst, why) in [
            (
                "productpage",
                ratings.as_str(),
                "ALLOW ratings-from-reviews, enforced by node2's agent",
            ),
            (
                "productpage",
                reviews_admin.as_str(),
                "DENY no-admin-from-productpage, in node1's kernel",
            ),
        ] {
            let r = c.client(pod, &["probe", "--to", dst])?;
            println!(
                "         {pod} -> {dst}: {} ({why})",
                if r["ok"] == true {
                    "ALLOWED (unexpected)".to_string()
                } else {
                    format!("denied: {}", r["error"].as_str().unwrap_or("-"))
                }
            );
        }
        for (i, node) in ["node1", "node2"].into_iter().enumerate() {
            let seen = last_ids[i];
            let conns = c.agent(node).connections()?;
            let recent = conns["recent"].as_array().cloned().unwrap_or_default();
            for r in recent
                .iter()
                .filter(|r| r["id"].as_u64().unwrap_or(0) > seen)
            {
                last_ids[i] = r["id"].as_u64().unwrap_or(0);
                println!(
                    "[{:>4}s] {node} {:<8} {:<11} {:>17} -> {:<17} {} -> {}  {} B",
                    started.elapsed().as_secs(),
                    r["direction"].as_str().unwrap_or("-"),
                    r["route"].as_str().unwrap_or("-"),
                    r["source"].as_str().unwrap_or("-"),
                    r["original_destination"].as_str().unwrap_or("-"),
                    short(&r["source_identity"]),
                    short(&r["destination_identity"]),
                    r["bytes_sent"],
                );
            }
        }
        println!(
            "         legacy -> reviews goes direct in plaintext (not enrolled; no agent record)"
        );
        for _ in 0..20 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    step("what the metrics say (node2, Istio names as Grafana/Kiali chart them)");
    let text = c.agent("node2").metrics_text().unwrap_or_default();
    for line in text.lines().filter(|l| {
        (l.starts_with("istio_tcp_connections_closed_total")
            && l.contains("response_flags=\"DENY\""))
            || (l.starts_with("istio_tcp_connections_opened_total")
                && l.contains("destination_app=\"ratings\""))
    }) {
        println!("  {line}");
    }
    println!(
        "  node1 kernel: denied_connect_policy = {}",
        c.agent("node1")
            .kernel_counter("denied_connect_policy")
            .unwrap_or(0)
    );
    step("tearing down (agents, control plane, pods, namespaces, cgroups, pins)");
    drop(c);
    step("done: nothing left behind");
    Ok(())
}

/// The L4 demo mesh, running: two nodes, the policies, the control plane,
/// both agents (`legacy` unenrolled) and the apps. Dropping it tears
/// everything down.
pub fn start(bins: Binaries) -> anyhow::Result<Cluster> {
    step("creating two nodes and their pods (network namespaces, bridges, cgroup leaves)");
    let mut c = Cluster::new(
        "mdemo",
        bins,
        &[
            ("node1", &["productpage", "details"]),
            ("node2", &["reviews", "ratings", "legacy"]),
        ],
    )?;
    c.write_config("30-authz.yaml", POLICIES)?;
    step("starting mesh-control (YAML directory, CA, Delta ADS on 10.0.0.254:15010)");
    c.start_control(&[])?;
    step("starting mesh-agent on both nodes (eBPF capture, xDS, certificates, HBONE :15008)");
    c.start_agent("node1", &[])?;
    c.start_agent("node2", &[])?;
    c.agent("node2").unenroll(c.pod("legacy"))?;
    c.serve("reviews", PORT, None)?;
    c.serve("details", PORT, None)?;
    c.serve("ratings", PORT, None)?;
    c.serve("reviews", ADMIN_PORT, None)?;
    Ok(c)
}
