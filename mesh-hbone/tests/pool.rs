//! Connection reuse: streams share a connection per (source, gateway,
//! expected identity), spill to a new one past the stream limit, and a dead
//! connection is replaced on next use.

mod support;

use mesh_hbone::{ClientOptions, HboneClient, HboneStream};
use mesh_testkit::{eventually_async, holds};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn echo_once(mut stream: HboneStream, msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_to_the_same_key_share_one_connection() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server = start_server(ca.store(&[&b])).await;
        let client = HboneClient::new(ca.store(&[&a]), ClientOptions::default());

        // Sequential: the second reuses the first's connection.
        for round in 0..2u8 {
            let s = client
                .connect(&a, server.addr, &b, authority(ECHO_PORT))
                .await
                .unwrap();
            echo_once(s, &[round; 100]).await;
        }
        // Concurrent and open at the same time.
        let streams = futures::future::try_join_all(
            (0..8).map(|_| client.connect(&a, server.addr, &b, authority(ECHO_PORT))),
        )
        .await
        .unwrap();
        futures::future::join_all(
            streams
                .into_iter()
                .enumerate()
                .map(|(i, s)| echo_once(s, format!("stream {i}").into_bytes().leak())),
        )
        .await;

        assert_eq!(server.handler.calls(), 10);
        assert_eq!(server.stats.connections_accepted(), 1);
        assert_eq!(client.pooled_connections(), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limit_opens_another_connection() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server = start_server(ca.store(&[&b])).await;
        let options = ClientOptions {
            max_streams_per_connection: 2,
            ..ClientOptions::default()
        };
        let client = HboneClient::new(ca.store(&[&a]), options);

        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(
                client
                    .connect(&a, server.addr, &b, authority(ECHO_PORT))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(server.stats.connections_accepted(), 2);
        assert_eq!(client.pooled_connections(), 2);

        // Once a stream ends its slot is free again: no third connection.
        let first = open.remove(0);
        echo_once(first, b"done").await;
        let fourth = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        assert_eq!(server.stats.connections_accepted(), 2);
        for s in open.into_iter().chain([fourth]) {
            echo_once(s, b"bye").await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_connection_is_replaced_on_next_use() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server_store = ca.store(&[&b]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut first = start_server_on(listener, server_store.clone(), async {
            let _ = stop_rx.await;
        })
        .await;
        let client = HboneClient::new(ca.store(&[&a]), ClientOptions::default());
        let s = client
            .connect(&a, addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        echo_once(s, b"before").await;
        assert_eq!(client.pooled_connections(), 1);

        // The gateway restarts: GOAWAY, connection closed, new listener.
        stop_tx.send(()).unwrap();
        (&mut first.task).await.unwrap();
        let listener = TcpListener::bind(addr).await.unwrap();
        let second = start_server_on(listener, server_store, std::future::pending()).await;

        let s = client
            .connect(&a, addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        echo_once(s, b"after").await;
        assert_eq!(second.stats.connections_accepted(), 1);
        assert_eq!(client.pooled_connections(), 1);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server = start_server(ca.store(&[&b])).await;
        let options = ClientOptions {
            idle_timeout: Some(std::time::Duration::from_millis(100)),
            ..ClientOptions::default()
        };
        let client = HboneClient::new(ca.store(&[&a]), options);
        let s = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        echo_once(s, b"x").await;
        eventually_async("idle connection leaves the pool", WAIT, || async {
            let n = client.pooled_connections();
            holds(n == 0, &n)
        })
        .await;
        let s = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        echo_once(s, b"y").await;
        assert_eq!(server.stats.connections_accepted(), 2);
    })
    .await
}

/// Makes sockets bound to one loopback source address, as the agent makes
/// them in one source pod's namespace.
struct BoundOrigin(std::net::Ipv4Addr, u64);

impl mesh_hbone::SocketOrigin for BoundOrigin {
    fn key(&self) -> u64 {
        self.1
    }

    fn socket(&self, _gateway: std::net::SocketAddr) -> mesh_hbone::SocketOriginFuture {
        use std::net::SocketAddr;
        let source = SocketAddr::from((self.0, 0));
        Box::pin(async move {
            use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType, SockaddrIn};
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            let fd = socket(AddressFamily::Inet, SockType::Stream, flags, None)?;
            let SocketAddr::V4(v4) = source else {
                unreachable!()
            };
            nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4))?;
            // The contract: an unconnected std socket.
            Ok(std::net::TcpStream::from(fd))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_socket_origin_gets_its_own_connection_from_its_own_socket() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server = start_server(ca.store(&[&b])).await;
        let client = HboneClient::new(ca.store(&[&a]), ClientOptions::default());
        let origins: [std::sync::Arc<dyn mesh_hbone::SocketOrigin>; 2] = [
            std::sync::Arc::new(BoundOrigin([127, 0, 0, 2].into(), 2)),
            std::sync::Arc::new(BoundOrigin([127, 0, 0, 3].into(), 3)),
        ];
        for round in 0..2u8 {
            for (i, origin) in origins.iter().enumerate() {
                let s = client
                    .connect_via(
                        &a,
                        server.addr,
                        &b,
                        authority(ECHO_PORT),
                        None,
                        Some(std::sync::Arc::clone(origin)),
                    )
                    .await
                    .unwrap();
                echo_once(s, &[round; 10]).await;
                let peer = server.handler.last_request().peer_addr;
                assert_eq!(
                    peer.ip(),
                    std::net::IpAddr::from([127, 0, 0, 2 + i as u8]),
                    "the tunnel left from its origin's socket"
                );
            }
        }
        // Same (source, gateway, expected), two origins: two connections,
        // each reused in the second round.
        assert_eq!(client.pooled_connections(), 2);
        assert_eq!(server.stats.connections_accepted(), 2);
    })
    .await
}
