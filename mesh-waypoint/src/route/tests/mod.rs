//! Route-path tests over the whole stack with a scripted upstream.
use std::{sync::Arc, time::Duration};

use envoy_types::pb::envoy::{
    config::{
        core::v3::{HeaderValue as PbHeaderValue, HeaderValueOption, RuntimeFractionalPercent},
        route::v3::{
            header_matcher::HeaderMatchSpecifier,
            route::Action as PbAction,
            route_action::{ClusterSpecifier, RequestMirrorPolicy},
            weighted_cluster::ClusterWeight,
            DirectResponseAction, HeaderMatcher, RedirectAction, RetryPolicy, WeightedCluster,
        },
    },
    r#type::{
        matcher::v3::{string_matcher::MatchPattern, RegexMatcher, StringMatcher},
        v3::FractionalPercent,
    },
};
use http::StatusCode;
use mesh_xds::proto::wkt;

use super::testing::*;
use crate::{
    config::{fault::FaultConfig, HttpFilter},
    upstream::UpstreamError,
};

fn filters() -> Vec<HttpFilter> {
    vec![
        HttpFilter::Fault(Arc::new(FaultConfig::default())),
        HttpFilter::Router,
    ]
}

fn dur(ms: u64) -> wkt::Duration {
    wkt::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn regex_header(name: &str, re: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            ignore_case: false,
            match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
                regex: re.into(),
                engine_type: None,
            })),
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn header_regex_route_then_default() {
    let mut firefox = prefix("/");
    firefox
        .headers
        .push(regex_header("user-agent", ".*Firefox.*"));
    let rc = reviews(vec![
        route("default/reviews/0", firefox, to_cluster("v2")),
        route("default/reviews/1", prefix("/"), to_cluster("v1")),
    ]);
    let h = harness(&active(&rc, filters()), 1);
    let (s, hdrs, _) = h
        .get("/reviews/1", &[("user-agent", "Mozilla/5.0 Firefox/120.0")])
        .await;
    assert_eq!(
        (s, hdrs["x-cluster"].to_str().unwrap()),
        (StatusCode::OK, "v2")
    );
    let (_, hdrs, _) = h.get("/reviews/1", &[("user-agent", "curl/8")]).await;
    assert_eq!(hdrs["x-cluster"], "v1");
    let recs = h.recorder.records();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].cluster.as_deref(), Some("v2"));
    assert_eq!(
        recs[0].service.as_deref(),
        Some("reviews.default.svc.cluster.local")
    );
    assert_eq!(recs[0].workload.as_deref(), Some("v2-pod"));
    assert_eq!(recs[1].flags, "-");
}

#[tokio::test]
async fn uri_exact_and_prefix_and_nr() {
    let rc = reviews(vec![
        route("exact", exact("/productpage"), to_cluster("exact")),
        route("prefix", prefix("/api/"), to_cluster("api")),
    ]);
    let h = harness(&active(&rc, filters()), 1);
    assert_eq!(h.get("/productpage", &[]).await.1["x-cluster"], "exact");
    assert_eq!(h.get("/productpage?u=1", &[]).await.1["x-cluster"], "exact");
    assert_eq!(h.get("/api/v1", &[]).await.1["x-cluster"], "api");
    let (s, _, _) = h.get("/productpage/x", &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(h.last_flags(), "NR");
    // Unknown host: no virtual host.
    let req = http::Request::builder()
        .uri("/")
        .header("host", "ratings:9080")
        .body(crate::body::empty())
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.upstream.calls().len(), 3);
}

#[tokio::test]
async fn prefix_rewrite_host_rewrite_and_header_edits() {
    let mut a = to_cluster("ratings");
    a.prefix_rewrite = "/v1/ratings".into();
    a.host_rewrite_specifier = Some(
        envoy_types::pb::envoy::config::route::v3::route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "ratings.prod".into(),
        ),
    );
    let mut r = route("rw", prefix("/ratings"), a);
    let set = |k: &str, v: &str, action: i32| HeaderValueOption {
        header: Some(PbHeaderValue {
            key: k.into(),
            value: v.into(),
            raw_value: vec![],
        }),
        append_action: action,
        ..Default::default()
    };
    r.request_headers_to_add = vec![set("x-set", "route", 2)];
    r.request_headers_to_remove = vec!["x-drop".into()];
    r.response_headers_to_add = vec![set("x-resp", "yes", 0)];
    let h = harness(&active(&reviews(vec![r]), filters()), 1);
    let (_, hdrs, _) = h
        .get("/ratings/7?x=1", &[("x-drop", "1"), ("x-set", "old")])
        .await;
    assert_eq!(hdrs["x-resp"], "yes");
    let call = &h.upstream.calls()[0];
    assert_eq!(call.uri, "/v1/ratings/7?x=1");
    assert_eq!(call.headers["host"], "ratings.prod");
    assert_eq!(call.headers["x-set"], "route");
    assert_eq!(call.headers["x-envoy-original-path"], "/ratings/7?x=1");
    assert!(!call.headers.contains_key("x-drop"));
}

#[tokio::test]
async fn redirect_and_direct_response() {
    let redirect = envoy_types::pb::envoy::config::route::v3::Route {
        name: "r".into(),
        r#match: Some(exact("/v1/bookRatings")),
        action: Some(PbAction::Redirect(RedirectAction {
            host_redirect: "newratings.default.svc.cluster.local".into(),
            path_rewrite_specifier: Some(
                envoy_types::pb::envoy::config::route::v3::redirect_action::PathRewriteSpecifier::PathRedirect(
                    "/v1/bookRatings".into(),
                ),
            ),
            ..Default::default()
        })),
        ..Default::default()
    };
    let direct = envoy_types::pb::envoy::config::route::v3::Route {
        name: "d".into(),
        r#match: Some(prefix("/teapot")),
        action: Some(PbAction::DirectResponse(DirectResponseAction {
            status: 418,
            body: Some(envoy_types::pb::envoy::config::core::v3::DataSource {
                specifier: Some(
                    envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                        "short and stout".into(),
                    ),
                ),
                watched_directory: None,
            }),
        })),
        ..Default::default()
    };
    let h = harness(&active(&reviews(vec![redirect, direct]), filters()), 1);
    let (s, hdrs, _) = h.get("/v1/bookRatings?id=3", &[]).await;
    assert_eq!(s, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        hdrs["location"],
        "http://newratings.default.svc.cluster.local/v1/bookRatings?id=3"
    );
    let (s, _, body) = h.get("/teapot", &[]).await;
    assert_eq!((s.as_u16(), &body[..]), (418, &b"short and stout"[..]));
    assert!(h.upstream.calls().is_empty());
}

fn weighted(targets: &[(&str, u32)]) -> envoy_types::pb::envoy::config::route::v3::RouteAction {
    envoy_types::pb::envoy::config::route::v3::RouteAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: targets
                .iter()
                .map(|(n, w)| ClusterWeight {
                    name: n.to_string(),
                    weight: Some(wkt::UInt32Value { value: *w }),
                    request_headers_to_add: vec![HeaderValueOption {
                        header: Some(PbHeaderValue {
                            key: "x-subset".into(),
                            value: n.to_string(),
                            raw_value: vec![],
                        }),
                        append_action: 2,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn weighted_30_70_through_the_stack() {
    let h = harness(
        &active(
            &reviews(vec![route(
                "w",
                prefix("/"),
                weighted(&[("v1", 30), ("v2", 70)]),
            )]),
            filters(),
        ),
        3,
    );
    let n = 4000;
    for _ in 0..n {
        h.get("/", &[]).await;
    }
    let v1 = h.upstream.count("v1") as f64 / n as f64;
    assert!((v1 - 0.30).abs() < 0.03, "v1 share {v1}");
    for c in h.upstream.calls() {
        assert_eq!(c.headers["x-subset"], c.cluster.as_str());
    }
}

#[tokio::test]
async fn mirror_goes_to_shadow_host_fire_and_forget() {
    let mut a = to_cluster("v1");
    a.request_mirror_policies = vec![RequestMirrorPolicy {
        cluster: "v2".into(),
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 100,
                denominator: 0,
            }),
            runtime_key: String::new(),
        }),
        ..Default::default()
    }];
    let h = harness(
        &active(&reviews(vec![route("m", prefix("/"), a)]), filters()),
        1,
    );
    h.upstream.script("v2", [Behavior::Hang]);
    let req = http::Request::builder()
        .method("POST")
        .uri("/reviews")
        .header("host", "reviews:9080")
        .body(crate::body::full("payload"))
        .unwrap();
    let (s, hdrs, _) = h.send(req).await;
    // The hanging mirror does not hold the primary response.
    assert_eq!(
        (s, hdrs["x-cluster"].to_str().unwrap()),
        (StatusCode::OK, "v1")
    );
    tokio::task::yield_now().await;
    let calls = h.upstream.calls();
    let mirror = calls.iter().find(|c| c.cluster == "v2").expect("mirrored");
    assert_eq!(mirror.headers["host"], "reviews-shadow:9080");
    let primary = calls.iter().find(|c| c.cluster == "v1").unwrap();
    assert_eq!(&primary.body[..], b"payload");
}

#[tokio::test(start_paused = true)]
async fn route_timeout_3s_is_504_ut() {
    let mut a = to_cluster("slow");
    a.timeout = Some(dur(3000));
    let h = harness(
        &active(&reviews(vec![route("t", prefix("/"), a)]), filters()),
        1,
    );
    h.upstream.script("slow", [Behavior::Hang]);
    let start = tokio::time::Instant::now();
    let (s, _, body) = h.get("/", &[]).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(&body[..], b"upstream request timeout");
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(h.last_flags(), "UT");
    assert_eq!(h.recorder.records()[0].duration, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn unset_timeout_is_envoy_default_15s() {
    let h = harness(
        &active(
            &reviews(vec![route("t", prefix("/"), to_cluster("slow"))]),
            filters(),
        ),
        1,
    );
    h.upstream.script("slow", [Behavior::Hang]);
    let start = tokio::time::Instant::now();
    assert_eq!(h.get("/", &[]).await.0, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_secs(15));
}

/// Istio's `timeout: 0s` (no route timeout) still ends a stream whose
/// upstream never answers: Envoy's stream idle timeout, 408 and `SI`.
#[tokio::test(start_paused = true)]
async fn no_route_timeout_still_ends_an_idle_stream_after_5_minutes() {
    let mut a = to_cluster("slow");
    a.timeout = Some(dur(0));
    let h = harness(
        &active(&reviews(vec![route("t", prefix("/"), a)]), filters()),
        1,
    );
    h.upstream.script("slow", [Behavior::Hang]);
    let start = tokio::time::Instant::now();
    let (s, _, body) = h.get("/", &[]).await;
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(&body[..], b"stream timeout");
    assert_eq!(start.elapsed(), Duration::from_secs(300));
    assert_eq!(h.last_flags(), "SI");
}

fn retrying(
    retry_on: &str,
    n: u32,
    per_try_ms: Option<u64>,
) -> envoy_types::pb::envoy::config::route::v3::RouteAction {
    let mut a = to_cluster("c");
    a.timeout = Some(dur(0));
    a.retry_policy = Some(RetryPolicy {
        retry_on: retry_on.into(),
        num_retries: Some(wkt::UInt32Value { value: n }),
        per_try_timeout: per_try_ms.map(dur),
        retry_host_predicate: vec![
            envoy_types::pb::envoy::config::route::v3::retry_policy::RetryHostPredicate {
                name: "envoy.retry_host_predicates.previous_hosts".into(),
                config_type: None,
            },
        ],
        retriable_status_codes: vec![503],
        ..Default::default()
    });
    a
}

#[tokio::test(start_paused = true)]
async fn retries_3_per_try_2s_then_504() {
    let h = harness(
        &active(
            &reviews(vec![route(
                "r",
                prefix("/"),
                retrying("5xx", 3, Some(2000)),
            )]),
            filters(),
        ),
        1,
    );
    h.upstream.script(
        "c",
        [
            Behavior::Hang,
            Behavior::Hang,
            Behavior::Hang,
            Behavior::Hang,
        ],
    );
    let start = tokio::time::Instant::now();
    let (s, _, _) = h.get("/", &[]).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(h.upstream.count("c"), 4);
    let elapsed = start.elapsed();
    // 4 tries of 2 s plus backoffs below 25 + 50 + 100 ms.
    assert!(
        elapsed >= Duration::from_secs(8) && elapsed < Duration::from_millis(8175),
        "{elapsed:?}"
    );
    assert_eq!(h.last_flags(), "URX,UT");
}

#[tokio::test(start_paused = true)]
async fn retry_succeeds_and_avoids_previous_hosts() {
    let h = harness(
        &active(
            &reviews(vec![route(
                "r",
                prefix("/"),
                retrying("gateway-error", 3, None),
            )]),
            filters(),
        ),
        1,
    );
    h.upstream.script(
        "c",
        [
            Behavior::Status(503),
            Behavior::Status(502),
            Behavior::Status(200),
        ],
    );
    let (s, hdrs, _) = h.get("/", &[]).await;
    assert_eq!(s, StatusCode::OK);
    // Paused time: only the two backoffs (< 25 ms, < 50 ms) elapsed.
    let service_ms: u64 = hdrs["x-envoy-upstream-service-time"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(service_ms < 75, "{service_ms}");
    let calls = h.upstream.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls[0].ctx.previous_hosts.is_empty());
    assert_eq!(calls[2].ctx.previous_hosts.len(), 2);
    assert_eq!(h.last_flags(), "-");
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_pass_last_response_with_urx() {
    let h = harness(
        &active(
            &reviews(vec![route(
                "r",
                prefix("/"),
                retrying("retriable-status-codes", 2, None),
            )]),
            filters(),
        ),
        1,
    );
    h.upstream.script(
        "c",
        [
            Behavior::Status(503),
            Behavior::Status(503),
            Behavior::Status(503),
        ],
    );
    let (s, hdrs, _) = h.get("/", &[]).await;
    assert_eq!(
        (s, hdrs["x-cluster"].to_str().unwrap()),
        (StatusCode::SERVICE_UNAVAILABLE, "c")
    );
    assert_eq!(h.upstream.count("c"), 3);
    assert_eq!(h.last_flags(), "URX");
}

#[tokio::test(start_paused = true)]
async fn non_retriable_status_and_budget() {
    let h = harness(
        &active(
            &reviews(vec![route(
                "r",
                prefix("/"),
                retrying("connect-failure", 3, None),
            )]),
            filters(),
        ),
        1,
    );
    h.upstream.script("c", [Behavior::Status(500)]);
    assert_eq!(h.get("/", &[]).await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.upstream.count("c"), 1);
    // Connect failures are retried until the cluster's budget is gone.
    h.upstream
        .permits
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let cf = || Behavior::Error(UpstreamError::ConnectFailure("refused".into()));
    h.upstream.script("c", [cf(), cf(), cf()]);
    let (s, _, body) = h.get("/", &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&body).contains("connection failure"));
    assert_eq!(h.upstream.count("c"), 3);
    assert_eq!(h.last_flags(), "UF");
}

#[tokio::test(start_paused = true)]
async fn post_body_is_replayed_on_retry() {
    let h = harness(
        &active(
            &reviews(vec![route("r", prefix("/"), retrying("5xx", 1, None))]),
            filters(),
        ),
        1,
    );
    h.upstream.script("c", [Behavior::Status(500)]);
    let req = http::Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "reviews:9080")
        .body(crate::body::full("order=1"))
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::OK);
    let calls = h.upstream.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(&calls[0].body[..], b"order=1");
    assert_eq!(&calls[1].body[..], b"order=1");
    assert_eq!(h.recorder.records()[0].request_bytes, 7);
}

#[tokio::test]
async fn hash_policy_reaches_the_upstream_and_mirror_at_0_percent_is_skipped() {
    use envoy_types::pb::envoy::config::route::v3::route_action::{hash_policy, HashPolicy};
    let mut a = to_cluster("c");
    a.hash_policy = vec![HashPolicy {
        terminal: false,
        policy_specifier: Some(hash_policy::PolicySpecifier::Header(hash_policy::Header {
            header_name: "x-user".into(),
            regex_rewrite: None,
        })),
    }];
    a.request_mirror_policies = vec![RequestMirrorPolicy {
        cluster: "shadow".into(),
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: 0,
                denominator: 0,
            }),
            runtime_key: String::new(),
        }),
        ..Default::default()
    }];
    let h = harness(
        &active(&reviews(vec![route("h", prefix("/"), a)]), filters()),
        1,
    );
    h.get("/", &[("x-user", "alice"), ("connection", "close")])
        .await;
    h.get("/", &[]).await;
    tokio::task::yield_now().await;
    let calls = h.upstream.calls();
    assert_eq!(calls.len(), 2, "no mirror at 0 %");
    assert_eq!(calls[0].ctx.hash, Some(super::hash::fnv1a(b"alice")));
    assert!(!calls[0].headers.contains_key("connection"));
    assert_eq!(calls[1].ctx.hash, None);
}

mod flow;
mod mirror;
mod panic;
mod policy;
