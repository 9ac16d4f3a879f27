//! The service graph's data (`/graph/data`, docs/contracts/graph-data.md)
//! over the running bookinfo demo, with the control plane scraping every
//! proxy itself (the default source): after a few rounds of the demo's
//! traffic the graph has productpage, the reviews versions, the waypoint
//! and the ingress gateway, the mesh hops are mTLS, and the reviews
//! canary's observed split matches the VirtualService's 80/20. Needs root;
//! run by `cargo xtask test`, which builds the binaries first.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use mesh_e2e::cluster::{Cluster, CONTROL_ADMIN};
use mesh_lab::demo_bookinfo;
use mesh_testkit::eventually;
use serde_json::Value;

/// `target/debug`: the test binary is `target/debug/deps/<name>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn graph_data(c: &Cluster) -> anyhow::Result<Value> {
    let body =
        mesh_e2e::netns::http_get_in(&c.underlay.path(), CONTROL_ADMIN, "/graph/data?window=120")?;
    Ok(serde_json::from_str(&body)?)
}

fn edge<'a>(data: &'a Value, id: &str) -> Option<&'a Value> {
    data["edges"].as_array()?.iter().find(|e| e["id"] == id)
}

fn node<'a>(data: &'a Value, id: &str) -> &'a Value {
    data["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == id))
        .unwrap_or_else(|| panic!("no node {id} in {data:#}"))
}

const REVIEWS_V1: &str = "service:default/reviews->workload:default/reviews-v1";
const REVIEWS_V2: &str = "service:default/reviews->workload:default/reviews-v2";
/// Canary requests: rounds × requests per call.
const ROUNDS: u32 = 5;
const PER_CALL: u32 = 20;

#[test]
fn demo_graph_has_the_mesh_and_the_canary_split() {
    mesh_e2e::require_root();
    let bins = mesh_lab::binaries_in(&profile_dir()).unwrap();
    let c = demo_bookinfo::start(bins, None).unwrap();
    // A target's first scrape is its baseline: warm up (a few requests a
    // round) until the canary shows, so the measured rounds fall between
    // scrapes of every proxy.
    eventually(
        "first canary requests in /graph/data",
        Duration::from_secs(40),
        || {
            demo_bookinfo::traffic_round(&c, 2);
            let data = graph_data(&c).map_err(|e| format!("{e:#}"))?;
            match edge(&data, REVIEWS_V1) {
                Some(_) => Ok(()),
                None => Err(format!("{data:#}")),
            }
        },
    );
    for _ in 0..ROUNDS {
        for call in demo_bookinfo::traffic_round(&c, PER_CALL) {
            let result = call.result.as_ref().map_err(|e| format!("{e:#}"));
            assert!(result.is_ok(), "{} -> {}: {result:?}", call.pod, call.url);
        }
    }
    // Every request of the rounds is in a scrape once the canary's rates
    // change after the last round: the waypoint was scraped since.
    let canary_rate = |data: &Value| {
        [REVIEWS_V1, REVIEWS_V2]
            .iter()
            .filter_map(|id| edge(data, id).and_then(|e| e["request_rate"].as_f64()))
            .sum::<f64>()
    };
    let after_rounds = canary_rate(&graph_data(&c).unwrap());
    let data = eventually(
        "a scrape after the canary rounds",
        Duration::from_secs(30),
        || {
            let data = graph_data(&c).map_err(|e| format!("{e:#}"))?;
            if canary_rate(&data) != after_rounds {
                Ok(data)
            } else {
                Err(format!("{data:#}"))
            }
        },
    );
    assert_eq!(data["source"], "scrape", "{data:#}");
    assert_eq!(data["errors"], Value::Array(vec![]), "{data:#}");

    for (id, kind) in [
        ("workload:default/productpage-v1", "workload"),
        ("workload:default/reviews-v1", "workload"),
        ("workload:default/reviews-v2", "workload"),
        ("workload:default/reviews-v3", "workload"),
        ("service:default/reviews", "service"),
        ("waypoint:default/waypoint", "waypoint"),
        ("gateway:default/istio-ingressgateway", "gateway"),
    ] {
        assert_eq!(node(&data, id)["kind"], kind, "{id}");
    }
    assert_eq!(node(&data, "workload:default/reviews-v2")["version"], "v2");
    assert_eq!(node(&data, "workload:default/reviews-v2")["app"], "reviews");

    // Mesh hops: through the waypoint, over mTLS, with latency.
    for id in [
        "workload:default/productpage-v1->waypoint:default/waypoint",
        "waypoint:default/waypoint->service:default/reviews",
        REVIEWS_V1,
        REVIEWS_V2,
    ] {
        let e = edge(&data, id).unwrap_or_else(|| panic!("no edge {id}: {data:#}"));
        assert!(e["request_rate"].as_f64().unwrap() > 0.0, "{e}");
        assert_eq!(e["mtls"], true, "{e}");
        assert_eq!(e["protocol"], "http", "{e}");
        assert_eq!(e["error_rate"], 0.0, "{e}");
        assert!(e["p50_ms"].as_f64().is_some_and(|p| p > 0.0), "{e}");
    }
    // The ingress: outside → gateway → productpage, not via the waypoint.
    assert!(
        edge(
            &data,
            "unknown:unknown/unknown->gateway:default/istio-ingressgateway"
        )
        .is_some(),
        "{data:#}"
    );
    assert!(
        edge(
            &data,
            "gateway:default/istio-ingressgateway->service:default/productpage"
        )
        .is_some(),
        "{data:#}"
    );

    // The canary: configured 80/20, observed within a tolerance (100
    // requests: a binomial standard deviation of 0.04).
    for (id, weight) in [(REVIEWS_V1, 80), (REVIEWS_V2, 20)] {
        let e = edge(&data, id).unwrap();
        assert_eq!(e["configured_weight"], weight, "{e}");
        let share = e["observed_share"].as_f64().unwrap();
        let want = f64::from(weight) / 100.0;
        assert!(
            (share - want).abs() <= 0.15,
            "{id}: seen {share}, configured {want}"
        );
    }
    // v3 is reached by jason's match route only: no weight of the split.
    let v3 = edge(
        &data,
        "service:default/reviews->workload:default/reviews-v3",
    )
    .unwrap();
    assert_eq!(v3["configured_weight"], Value::Null, "{v3}");
    assert!(v3["request_rate"].as_f64().unwrap() > 0.0, "{v3}");
}
