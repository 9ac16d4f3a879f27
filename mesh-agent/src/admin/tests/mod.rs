//! Admin routes without a kernel: logging, methods, readiness, and a
//! quitquitquit that really drains a listener.
use std::{sync::Arc, time::Duration};

use http_body_util::BodyExt as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;
use crate::shutdown::stop_and_drain;

fn state(log: Option<Arc<LogControl>>) -> Arc<AdminState> {
    Arc::new(AdminState {
        stats: Arc::new(ConnectionStats::default()),
        mesh: None,
        capture: None,
        log,
        shutdown: Arc::new(Shutdown::default()),
    })
}

fn call(state: &AdminState, method: Method, target: &str) -> (StatusCode, String) {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let resp = route(
        state,
        &Req {
            method: &method,
            path,
            query,
        },
    );
    let status = resp.status();
    let body = futures_body(resp);
    (status, body)
}

fn futures_body(resp: Response<Body>) -> String {
    let bytes = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(resp.into_body().collect())
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn logging_endpoint_changes_the_filter_and_names_a_bad_level() {
    let (layer, control) = LogControl::new("info,access=info").unwrap();
    // The reload handle needs its subscriber alive, not installed.
    let _subscriber = tracing_subscriber::registry().with(layer);
    let state = state(Some(Arc::new(control)));
    assert_eq!(
        call(&state, Method::GET, "/logging"),
        (StatusCode::OK, "info,access=info\n".into())
    );
    let (status, body) = call(
        &state,
        Method::POST,
        "/logging?level=debug&mesh_agent%3A%3Apolicy=trace",
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "debug,access=info,mesh_agent::policy=trace\n");
    let (status, body) = call(&state, Method::POST, "/logging?access=off");
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::OK,
            "debug,access=off,mesh_agent::policy=trace\n"
        )
    );
    let (status, body) = call(&state, Method::POST, "/logging?level=verbose");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("\"verbose\""), "{body}");
    let (status, _) = call(&state, Method::POST, "/logging");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&state, Method::GET, "/logging").1,
        "debug,access=off,mesh_agent::policy=trace\n"
    );
}

#[test]
fn reads_are_get_and_changes_post() {
    let state = state(None);
    assert_eq!(
        call(&state, Method::POST, "/stats/connections").0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&state, Method::GET, "/quitquitquit").0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        call(&state, Method::DELETE, "/logging").0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert!(!state.shutdown.is_triggered());
    let (status, body) = call(&state, Method::GET, "/stats/connections");
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["active"].is_array() && json["recent"].is_array(),
        "{json}"
    );
    let dump: serde_json::Value =
        serde_json::from_str(&call(&state, Method::GET, "/config_dump").1).unwrap();
    assert!(dump["workloads"].as_array().unwrap().is_empty());
}

#[test]
fn readiness_follows_start_and_drain() {
    let state = state(None);
    assert_eq!(
        call(&state, Method::GET, "/healthz/ready").0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    state.shutdown.set_ready();
    assert_eq!(
        call(&state, Method::GET, "/healthz/ready").0,
        StatusCode::OK
    );
    state.shutdown.trigger(Reason::Sigterm);
    let (status, body) = call(&state, Method::GET, "/healthz/ready");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("draining"));
}

/// A stand-in data-path listener: each accepted connection is "open"
/// until the client closes it.
fn data_listener(
    listener: TcpListener,
    stats: Arc<ConnectionStats>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (mut conn, peer) = listener.accept().await.unwrap();
            let stats = Arc::clone(&stats);
            let open = stats.open(peer, conn.local_addr().unwrap());
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while conn.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                stats.finish(open, 0, 0, None);
            });
        }
    })
}

async fn post(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn quitquitquit_stops_accepting_and_waits_for_open_connections() {
    let state = state(None);
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let st = Arc::clone(&state);
    http::spawn(
        admin,
        mesh_admin::http_serve::HttpLimits::small(None),
        Arc::new(move |req| route(&st, req)),
    );
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data_addr = data.local_addr().unwrap();
    let accepting = data_listener(data, Arc::clone(&state.stats));

    let mut client = TcpStream::connect(data_addr).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    while state.stats.totals().active == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // What app.rs does: wait for the trigger, then stop and drain.
    let drained = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            state.shutdown.triggered().await;
            stop_and_drain(vec![accepting], &state.stats, Duration::from_secs(20)).await
        })
    };
    let answer = post(admin_addr, "/quitquitquit").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The listener is closed: a new connection is refused...
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(data_addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "the data listener still accepts after quitquitquit"
    );
    // ...while the open one still works and the drain waits for it.
    client.write_all(b"still here").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!drained.is_finished(), "drain ended with a connection open");
    drop(client);
    let left = tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("drain did not end after the last connection closed")
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn drain_gives_up_after_the_timeout() {
    let stats = Arc::new(ConnectionStats::default());
    let _open = stats.open("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
    let started = tokio::time::Instant::now();
    let left = stop_and_drain(vec![], &stats, Duration::from_millis(150)).await;
    assert_eq!(left, 1);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

mod limits;
