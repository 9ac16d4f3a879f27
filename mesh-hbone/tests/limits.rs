//! What one hostile peer can make the HBONE server hold: request headers
//! are bounded, and connections per source IP are capped before any TLS
//! work is spent on them.

mod support;

use std::{net::SocketAddr, sync::Arc};

use mesh_hbone::{HboneServer, ServerOptions};
use mesh_testkit::{eventually_async, holds};
use support::*;
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpSocket},
};

/// Raw h2 over our TLS config, so the request can be one `HboneClient`
/// never sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_never_reach_the_handler() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("frontend", "web"), id("backend", "api"));
        let server = start_server(ca.store(&[&b])).await;
        let (config, name) = mesh_hbone::client_config(ca.store(&[&a]), &a, &b, false).unwrap();
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
            .connect(name, tcp)
            .await
            .unwrap();
        // The client itself must not cut the header list short.
        let (send, conn) = h2::client::Builder::new()
            .max_header_list_size(u32::MAX)
            .handshake::<_, bytes::Bytes>(tls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut send = send.ready().await.unwrap();
        let connect = http::Request::connect(authority(ECHO_PORT).to_string())
            .header("x-filler", "a".repeat(256 * 1024))
            .body(())
            .unwrap();
        let status = match send.send_request(connect, false) {
            Ok((response, _)) => response.await.ok().map(|r| r.status()),
            Err(_) => None,
        };
        assert_ne!(
            status,
            Some(http::StatusCode::OK),
            "a 256 KiB header list was accepted"
        );
        assert_eq!(server.handler.calls(), 0);
    })
    .await
}

async fn connect_from(source: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_source_cap_are_closed_before_tls() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let b = id("backend", "api");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(TestHandler::default());
        let server = HboneServer::new(ca.store(&[&b]), Arc::new(SharedHandler(handler)))
            .with_options(ServerOptions {
                max_connections_per_source: 2,
                ..ServerOptions::default()
            });
        let stats = server.stats();
        let task = tokio::spawn(server.serve(listener));

        // Two idle connections (no ClientHello) take the source's slots.
        let _held = [
            connect_from([127, 0, 0, 1], addr).await,
            connect_from([127, 0, 0, 1], addr).await,
        ];
        eventually_async("two connections accepted", WAIT, || async {
            let n = stats.connections_accepted();
            holds(n == 2, &n)
        })
        .await;
        let mut third = connect_from([127, 0, 0, 1], addr).await;
        let mut sink = Vec::new();
        let _ = third.read_to_end(&mut sink).await;
        assert!(sink.is_empty());
        // Closed by the cap, not by the handshake timeout.
        assert_eq!(stats.handshake_failures(), 0);
        assert_eq!(stats.connections_accepted(), 2);
        task.abort();
    })
    .await
}
