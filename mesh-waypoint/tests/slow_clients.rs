//! The plain listener under slow clients: a request head that never
//! finishes (slowloris) and an idle kept-alive connection are both closed
//! after the header-read timeout, with time paused so the test waits for
//! nothing real.
use std::{sync::Arc, time::Duration};

use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use mesh_waypoint::{
    app::wiring,
    config::{route_config, ActiveConfig, HttpFilter},
    route::{Deps, Proxy},
    server::{self, conn::HEADER_READ_TIMEOUT},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

async fn waypoint() -> std::net::SocketAddr {
    let cfg = ActiveConfig {
        listener: None,
        table: Arc::new(route_config::translate(&RouteConfiguration::default()).unwrap()),
        filters: vec![HttpFilter::Router],
        generation: 1,
    };
    let clusters = wiring::ClusterManager::new(wiring::UpstreamOptions {
        hbone: None,
        identity: None,
    });
    let proxy = Proxy::new(Arc::new(cfg), Deps::new(clusters));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = stop;
        server::http::serve(listener, proxy, shutdown).await;
    });
    addr
}

/// Reads until the server closes; `None` if it is still open after `limit`.
async fn closed_within(tcp: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut sink = Vec::new();
    tokio::time::timeout(limit, tcp.read_to_end(&mut sink))
        .await
        .ok()
        .map(|_| sink)
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_request_head_is_closed_after_the_header_timeout() {
    let addr = waypoint().await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: reviews:9080\r\nx-slow: ")
        .await
        .unwrap();
    let limit = HEADER_READ_TIMEOUT + Duration::from_secs(5);
    assert!(
        closed_within(&mut slow, limit).await.is_some(),
        "a request head still unfinished after {limit:?} keeps its connection"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let addr = waypoint().await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: nowhere\r\n\r\n")
        .await
        .unwrap();
    // The answer (404: no such host) comes, then the connection idles.
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(
        &first,
        b"HTTP/1.1 404",
        "{}",
        String::from_utf8_lossy(&first)
    );
    let limit = HEADER_READ_TIMEOUT * 2 + Duration::from_secs(5);
    assert!(
        closed_within(&mut idle, limit).await.is_some(),
        "an idle keep-alive connection is still open after {limit:?}"
    );
}
