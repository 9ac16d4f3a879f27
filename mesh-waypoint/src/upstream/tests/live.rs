//! The upstream side against real HTTP servers on 127.0.0.1: a
//! [`ClusterManager`] built from hand-made Cluster / ClusterLoadAssignment
//! resources sends real requests.
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU32, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster, OutlierDetection};
use envoy_types::pb::envoy::r#type::v3::Percent;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use mesh_xds::proto::wkt;

use crate::body;
use crate::upstream::{
    cluster::{
        tests::{cla, protocol_options, protocol_options_idle, thresholds},
        HTTP_PROTOCOL_OPTIONS,
    },
    ClusterManager, Directory, SendContext, Upstream, UpstreamError, UpstreamOptions,
};

/// A test endpoint: answers `<name> <version>` with `status`, after
/// `delay`; counts connections and requests, and the most requests it
/// handled at once (connections open at once can overlap briefly: the
/// server notices a close after the client has moved on).
pub(super) struct Server {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    pub status: Arc<AtomicU32>,
}

pub(super) async fn server(name: &'static str, status: u16, delay: Duration) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let status = Arc::new(AtomicU32::new(u32::from(status)));
    let s = Server {
        addr,
        connections: connections.clone(),
        max_in_flight: max_in_flight.clone(),
        requests: requests.clone(),
        status: status.clone(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            connections.fetch_add(1, Ordering::SeqCst);
            let (requests, status) = (requests.clone(), status.clone());
            let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (requests, status) = (requests.clone(), status.clone());
                    let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                    async move {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max_in_flight.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let code = status.load(Ordering::SeqCst) as u16;
                        let body = format!("{name} {:?}", req.version());
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    s
}

pub(super) fn cluster(name: &str, lb: cluster::LbPolicy) -> Cluster {
    Cluster {
        name: name.into(),
        lb_policy: lb as i32,
        connect_timeout: Some(wkt::Duration {
            seconds: 2,
            nanos: 0,
        }),
        common_lb_config: Some(cluster::CommonLbConfig {
            healthy_panic_threshold: Some(Percent { value: 0.0 }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn manager(c: &Cluster, endpoints: &[SocketAddr]) -> Arc<ClusterManager> {
    let cm = ClusterManager::new(UpstreamOptions::default());
    cm.apply_resources([c], [&cla(&c.name, endpoints)], Directory::default());
    cm
}

fn get(path: &str) -> Request<body::Body> {
    Request::builder()
        .uri(path)
        .header("host", "reviews:9080")
        .body(body::empty())
        .unwrap()
}

pub(super) async fn call(
    cm: &ClusterManager,
    cluster: &str,
) -> Result<(StatusCode, String), UpstreamError> {
    let r = cm.send(cluster, get("/"), SendContext::default()).await?;
    let status = r.response.status();
    let bytes = r.response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

#[tokio::test]
async fn round_robin_spreads_and_reuses_connections() {
    let servers = [
        server("a", 200, Duration::ZERO).await,
        server("b", 200, Duration::ZERO).await,
        server("c", 200, Duration::ZERO).await,
    ];
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let cm = manager(&cluster("rr", cluster::LbPolicy::RoundRobin), &addrs);
    let mut seen = Vec::new();
    for _ in 0..9 {
        let (status, body) = call(&cm, "rr").await.unwrap();
        assert_eq!(status, 200);
        seen.push(body);
    }
    for s in &servers {
        assert_eq!(s.requests.load(Ordering::SeqCst), 3);
        // Sequential requests reuse the idle HTTP/1.1 connection.
        assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    }
    assert!(seen.iter().all(|b| b.ends_with("HTTP/1.1")), "{seen:?}");
    let dump = cm.dump();
    assert_eq!(dump["clusters"][0]["lb"], "ROUND_ROBIN");
    assert_eq!(dump["endpoints"].as_array().unwrap().len(), 3);
    assert_eq!(
        dump["endpoints"][0]["workload"],
        format!("uid-{}", addrs[0])
    );
}

#[tokio::test]
async fn pool_limit_one_overflows_concurrent_requests() {
    let s = server("a", 200, Duration::from_millis(300)).await;
    let mut c = cluster("cb", cluster::LbPolicy::RoundRobin);
    // Seed: maxConnections 1, http1MaxPendingRequests 1,
    // maxRequestsPerConnection 1.
    c.circuit_breakers = Some(thresholds(1, 1, u32::MAX, u32::MAX));
    c.typed_extension_protocol_options = [(
        HTTP_PROTOCOL_OPTIONS.to_string(),
        protocol_options(false, Some(1)),
    )]
    .into();
    let cm = manager(&c, &[s.addr]);
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let cm = Arc::clone(&cm);
            tokio::spawn(async move { call(&cm, "cb").await })
        })
        .collect();
    let mut ok = 0;
    let mut overflow = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok((status, _)) => {
                assert_eq!(status, 200);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.flag(), "UO", "{e}");
                overflow += 1;
            }
        }
    }
    assert!(ok >= 1 && overflow >= 2, "ok {ok} overflow {overflow}");
    assert_eq!(s.max_in_flight.load(Ordering::SeqCst), 1);
    // One request per connection: every success had its own.
    assert_eq!(s.connections.load(Ordering::SeqCst), ok);
    let dump = cm.dump();
    assert!(
        dump["clusters"][0]["overflows"]["max_pending_requests"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

#[tokio::test]
async fn failing_host_is_ejected_then_returns() {
    let good = server("good", 200, Duration::ZERO).await;
    let bad = server("bad", 500, Duration::ZERO).await;
    let mut c = cluster("od", cluster::LbPolicy::RoundRobin);
    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: Some(wkt::UInt32Value { value: 1 }),
        interval: Some(wkt::Duration {
            seconds: 0,
            nanos: 50_000_000,
        }),
        base_ejection_time: Some(wkt::Duration {
            seconds: 0,
            nanos: 300_000_000,
        }),
        max_ejection_percent: Some(wkt::UInt32Value { value: 100 }),
        ..Default::default()
    });
    let cm = manager(&c, &[good.addr, bad.addr]);
    // Until the bad host has answered once, then never again while ejected.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(call(&cm, "od").await.unwrap().0);
    }
    assert!(statuses.contains(&StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(bad.requests.load(Ordering::SeqCst), 1);
    assert_eq!(cm.dump()["endpoints"][1]["health"], "EJECTED");
    for _ in 0..5 {
        assert_eq!(call(&cm, "od").await.unwrap().0, 200);
    }
    assert_eq!(bad.requests.load(Ordering::SeqCst), 1);
    // Back after base_ejection_time; it now answers 200.
    bad.status.store(200, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while bad.requests.load(Ordering::SeqCst) == 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bad host never returned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        call(&cm, "od").await.unwrap();
    }
}

#[tokio::test]
async fn all_hosts_ejected_without_panic_is_no_healthy_upstream() {
    let bad = server("bad", 503, Duration::ZERO).await;
    let mut c = cluster("uh", cluster::LbPolicy::LeastRequest);
    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: Some(wkt::UInt32Value { value: 1 }),
        max_ejection_percent: Some(wkt::UInt32Value { value: 100 }),
        ..Default::default()
    });
    let cm = manager(&c, &[bad.addr]);
    assert_eq!(call(&cm, "uh").await.unwrap().0, 503);
    assert_eq!(call(&cm, "uh").await.unwrap_err().flag(), "UH");
    assert_eq!(call(&cm, "nope").await.unwrap_err().flag(), "NC");
}

#[tokio::test]
async fn refused_connection_is_upstream_connect_failure() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cm = manager(
        &cluster("uf", cluster::LbPolicy::Random),
        &[SocketAddr::from(([127, 0, 0, 1], port))],
    );
    let e = call(&cm, "uf").await.unwrap_err();
    assert_eq!(e.flag(), "UF", "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}

#[tokio::test]
async fn h2_upstream_multiplexes_on_one_connection() {
    let s = server("h2", 200, Duration::from_millis(100)).await;
    let mut c = cluster("h2", cluster::LbPolicy::RoundRobin);
    c.typed_extension_protocol_options = [(
        HTTP_PROTOCOL_OPTIONS.to_string(),
        protocol_options(true, None),
    )]
    .into();
    let cm = manager(&c, &[s.addr]);
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let cm = Arc::clone(&cm);
            tokio::spawn(async move { call(&cm, "h2").await })
        })
        .collect();
    for c in calls {
        let (status, body) = c.await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, "h2 HTTP/2.0");
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
}

/// An HTTP/2 server that answers every stream with RST_STREAM(REFUSED_STREAM).
async fn refusing_h2_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_stream_the_h2_server_refuses_is_a_refused_stream() {
    let addr = refusing_h2_server().await;
    let mut c = cluster("refuse", cluster::LbPolicy::RoundRobin);
    c.typed_extension_protocol_options = [(
        HTTP_PROTOCOL_OPTIONS.to_string(),
        protocol_options(true, None),
    )]
    .into();
    let cm = manager(&c, &[addr]);
    let err = tokio::time::timeout(Duration::from_secs(10), call(&cm, "refuse"))
        .await
        .expect("refused stream timed out")
        .unwrap_err();
    assert!(err.is_refused_stream(), "{err:?}");
    assert_eq!(err.flag(), "UR");
}

#[tokio::test]
async fn retry_budget_is_the_clusters_max_retries() {
    let s = server("a", 200, Duration::ZERO).await;
    let mut c = cluster("rb", cluster::LbPolicy::RoundRobin);
    c.circuit_breakers = Some(thresholds(10, 10, 10, 2));
    let cm = manager(&c, &[s.addr]);
    let p1 = cm.retry_permit("rb").unwrap();
    let _p2 = cm.retry_permit("rb").unwrap();
    assert!(cm.retry_permit("rb").is_none());
    drop(p1);
    assert!(cm.retry_permit("rb").is_some());
}

#[tokio::test]
async fn http1_connections_carry_at_most_max_requests_per_connection() {
    let s = server("a", 200, Duration::ZERO).await;
    let mut c = cluster("mr", cluster::LbPolicy::RoundRobin);
    c.typed_extension_protocol_options = [(
        HTTP_PROTOCOL_OPTIONS.to_string(),
        protocol_options(false, Some(2)),
    )]
    .into();
    let cm = manager(&c, &[s.addr]);
    for _ in 0..5 {
        assert_eq!(call(&cm, "mr").await.unwrap().0, 200);
    }
    // 2 + 2 + 1 requests.
    assert_eq!(s.connections.load(Ordering::SeqCst), 3);
    assert_eq!(cm.dump()["endpoints"][0]["active_requests"], 0);
}

#[tokio::test]
async fn active_requests_last_until_the_body_is_read() {
    let s = server("a", 200, Duration::ZERO).await;
    let cm = manager(&cluster("ar", cluster::LbPolicy::LeastRequest), &[s.addr]);
    let r = cm
        .send("ar", get("/"), SendContext::default())
        .await
        .unwrap();
    assert_eq!(cm.dump()["endpoints"][0]["active_requests"], 1);
    assert!(
        cm.metrics()
            .active_requests
            .get_or_create(&crate::upstream::UpstreamMetrics::cluster("ar"))
            .get()
            == 1
    );
    r.response.into_body().collect().await.unwrap();
    assert_eq!(cm.dump()["endpoints"][0]["active_requests"], 0);
    // Same endpoint again: the connection went back to the pool.
    call(&cm, "ar").await.unwrap();
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn endpoint_state_survives_an_update_that_keeps_it() {
    let a = server("a", 200, Duration::ZERO).await;
    let b = server("b", 200, Duration::ZERO).await;
    let c = cluster("up", cluster::LbPolicy::RoundRobin);
    let cm = manager(&c, &[a.addr]);
    call(&cm, "up").await.unwrap();
    cm.apply_resources([&c], [&cla("up", &[a.addr, b.addr])], Directory::default());
    for _ in 0..4 {
        call(&cm, "up").await.unwrap();
    }
    // a's pooled connection was kept across the update.
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
    assert_eq!(b.requests.load(Ordering::SeqCst), 2);
    // A cluster that disappears is gone.
    cm.apply_resources([], [], Directory::default());
    assert_eq!(call(&cm, "up").await.unwrap_err().flag(), "NC");
}

#[tokio::test]
async fn idle_connections_close_after_idle_timeout() {
    let s = server("a", 200, Duration::ZERO).await;
    let mut c = cluster("it", cluster::LbPolicy::RoundRobin);
    c.typed_extension_protocol_options = [(
        HTTP_PROTOCOL_OPTIONS.to_string(),
        protocol_options_idle(false, None, Duration::from_millis(100)),
    )]
    .into();
    let cm = manager(&c, &[s.addr]);
    call(&cm, "it").await.unwrap();
    assert_eq!(cm.dump()["endpoints"][0]["connections"], 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cm.dump()["endpoints"][0]["connections"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle connection never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call(&cm, "it").await.unwrap();
    assert_eq!(s.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn reused_connections_leave_no_task_behind_per_request() {
    // Istio's idle timeout is an hour: a timer task per returned
    // connection would pile up by the tens of thousands under load.
    let s = server("a", 200, Duration::ZERO).await;
    let cm = manager(&cluster("tasks", cluster::LbPolicy::RoundRobin), &[s.addr]);
    call(&cm, "tasks").await.unwrap();
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    for _ in 0..200 {
        call(&cm, "tasks").await.unwrap();
    }
    let after = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    assert!(
        after <= baseline + 2,
        "tasks grew from {baseline} to {after} over 200 requests"
    );
}

/// A raw HTTP/1.1 server that answers one request per connection with a
/// keep-alive response, then closes the socket shortly after: the pooled
/// connection dies while idle.
async fn one_shot_server() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tcp.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_server_is_not_used() {
    let (addr, accepted) = one_shot_server().await;
    let cm = manager(&cluster("oc", cluster::LbPolicy::RoundRobin), &[addr]);
    for _ in 0..3 {
        assert_eq!(
            call(&cm, "oc").await.unwrap(),
            (StatusCode::OK, "ok".to_string())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn set_endpoints_adds_a_default_cluster_beside_the_others() {
    let a = server("a", 200, Duration::ZERO).await;
    let b = server("b", 200, Duration::ZERO).await;
    let cm = manager(&cluster("xds", cluster::LbPolicy::Random), &[a.addr]);
    cm.set_endpoints("static", vec![b.addr]);
    assert_eq!(call(&cm, "static").await.unwrap().1, "b HTTP/1.1");
    assert_eq!(call(&cm, "xds").await.unwrap().1, "a HTTP/1.1");
    let dump = cm.dump();
    assert_eq!(dump["clusters"][0]["name"], "static");
    assert_eq!(dump["clusters"][0]["lb"], "ROUND_ROBIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers_hold_under_parallel_load_and_release_everything() {
    let s = server("a", 200, Duration::from_millis(5)).await;
    let mut c = cluster("load", cluster::LbPolicy::RoundRobin);
    c.circuit_breakers = Some(thresholds(1, 1, u32::MAX, u32::MAX));
    c.typed_extension_protocol_options = [(
        HTTP_PROTOCOL_OPTIONS.to_string(),
        protocol_options(false, Some(1)),
    )]
    .into();
    let cm = manager(&c, &[s.addr]);
    // Samples the client side: never more than one connection open.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (cm, done) = (Arc::clone(&cm), done.clone());
        tokio::spawn(async move {
            let mut max = 0;
            while !done.load(Ordering::SeqCst) {
                max = max.max(cm.dump()["endpoints"][0]["connections"].as_u64().unwrap());
                tokio::task::yield_now().await;
            }
            max
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let cm = Arc::clone(&cm);
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut uo) = (0, 0);
            for _ in 0..15 {
                match call(&cm, "load").await {
                    Ok((status, _)) => {
                        assert_eq!(status, 200);
                        ok += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.flag(), "UO", "{e}");
                        uo += 1;
                    }
                }
            }
            (ok, uo)
        }));
    }
    let (mut ok, mut uo) = (0, 0);
    for t in tasks {
        let (o, u) = t.await.unwrap();
        ok += o;
        uo += u;
    }
    done.store(true, Ordering::SeqCst);
    assert!(sampler.await.unwrap() <= 1);
    assert_eq!(ok + uo, 60);
    assert!(ok > 0 && uo > 0, "ok {ok} uo {uo}");
    assert_eq!(s.max_in_flight.load(Ordering::SeqCst), 1);
    // Every unit went back: connections close, nothing stays active.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while cm.dump()["endpoints"][0]["connections"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "connections leaked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(cm.dump()["endpoints"][0]["active_requests"], 0);
    assert_eq!(call(&cm, "load").await.unwrap().0, 200);
}
