//! End-to-end tunnels on loopback: identities seen by the handler, bulk
//! echo, half-close in both directions, and refusals.

mod support;

use std::sync::Arc;

use mesh_hbone::{ClientError, ClientOptions, HboneClient};
use mesh_testkit::eventually_async;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_8_mib_with_identities_and_half_close() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("frontend", "web"), id("backend", "api"));
        let server = start_server(ca.store(&[&b])).await;
        let client = HboneClient::new(ca.store(&[&a]), ClientOptions::default());

        let stream = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        assert_eq!(
            serial_of(stream.peer_certificate().unwrap()),
            serial_hex(100)
        );

        let seen = server.handler.last_request();
        assert_eq!(seen.peer, a);
        assert_eq!(seen.local_identity, b);
        assert_eq!(seen.authority, authority(ECHO_PORT));
        assert!(seen.peer_addr.ip().is_loopback());

        // Write everything, then half-close; the echo side sees EOF, finishes
        // and half-closes back, which ends our read.
        let data = payload(8 << 20, 1);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let to_send = data.clone();
        let writer = tokio::spawn(async move {
            wr.write_all(&to_send).await.unwrap();
            wr.shutdown().await.unwrap();
        });
        let mut echoed = Vec::with_capacity(data.len());
        rd.read_to_end(&mut echoed).await.unwrap();
        writer.await.unwrap();
        assert_eq!(echoed.len(), data.len());
        assert!(echoed == data, "echoed bytes differ from the bytes sent");

        eventually_async("the relay reports its totals", WAIT, || async {
            !server.handler.outcomes.lock().unwrap().is_empty()
        })
        .await;
        let outcome = server.handler.outcomes.lock().unwrap()[0];
        assert_eq!(outcome, (8 << 20, 8 << 20, true));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_half_close_reaches_client_while_client_keeps_sending() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("frontend", "web"), id("backend", "api"));
        let server = start_server(ca.store(&[&b])).await;
        let client = HboneClient::new(ca.store(&[&a]), ClientOptions::default());

        let mut stream = client
            .connect(&a, server.addr, &b, authority(SERVER_FIRST_PORT))
            .await
            .unwrap();
        // The upstream wrote and shut down its side: we read its bytes and EOF
        // although our own direction is still open.
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, SERVER_FIRST);
        let data = payload(1 << 20, 2);
        stream.write_all(&data).await.unwrap();
        stream.shutdown().await.unwrap();
        eventually_async("the upstream saw the client's EOF", WAIT, || async {
            !server.handler.received.lock().unwrap().is_empty()
        })
        .await;
        assert_eq!(server.handler.received.lock().unwrap()[0], 1 << 20);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_refusal_reaches_client_as_status() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("frontend", "web"), id("backend", "api"));
        let server = start_server(ca.store(&[&b])).await;
        let client = HboneClient::new(ca.store(&[&a]), ClientOptions::default());

        let err = client
            .connect(&a, server.addr, &b, authority(FORBIDDEN_PORT))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(http::StatusCode::FORBIDDEN), "{err}");
        assert!(matches!(err, ClientError::Status { authority: x, .. } if x == authority(FORBIDDEN_PORT)));
        assert!(!err.is_retryable());
        assert_eq!(server.stats.streams_rejected(), 1);

        // The connection stays usable after a refused stream.
        let mut ok = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        ok.write_all(b"ping").await.unwrap();
        ok.shutdown().await.unwrap();
        let mut back = Vec::new();
        ok.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ping");
        assert_eq!(server.stats.connections_accepted(), 1);
    })
    .await
}

/// Raw h2 over our TLS config: requests `HboneClient` never sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_connect_is_405_and_bad_authority_is_400() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("frontend", "web"), id("backend", "api"));
        let server = start_server(ca.store(&[&b])).await;
        let client_store = ca.store(&[&a]);

        let (config, name) = mesh_hbone::client_config(client_store, &a, &b, false).unwrap();
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&config))
            .connect(name, tcp)
            .await
            .unwrap();
        let (send, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(conn);
        let mut send = send.ready().await.unwrap();

        let get = http::Request::get("https://10.244.1.7:7/")
            .body(())
            .unwrap();
        let (response, _) = send.send_request(get, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 405);

        let mut send = send.ready().await.unwrap();
        let connect = http::Request::connect("backend.example:80")
            .body(())
            .unwrap();
        let (response, _) = send.send_request(connect, false).unwrap();
        assert_eq!(response.await.unwrap().status(), 400);
        assert_eq!(server.handler.calls(), 0);
        assert_eq!(server.stats.streams_rejected(), 2);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_authority_and_socket_mark() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("frontend", "web"), id("backend", "api"));
        let server = start_server(ca.store(&[&b])).await;
        // SO_MARK needs CAP_NET_ADMIN: find out whether this process has it.
        let probe = tokio::net::TcpSocket::new_v4().unwrap();
        let may_mark =
            nix::sys::socket::setsockopt(&probe, nix::sys::socket::sockopt::Mark, &0x539).is_ok();
        let options = ClientOptions {
            socket_mark: Some(0x539),
            ..ClientOptions::default()
        };
        let client = HboneClient::new(ca.store(&[&a]), options);
        let v6: std::net::SocketAddr = "[fd00:10:244::7]:7".parse().unwrap();

        match client.connect(&a, server.addr, &b, v6).await {
            Ok(mut s) => {
                assert!(may_mark, "connected although SO_MARK should have failed");
                assert_eq!(server.handler.last_request().authority, v6);
                s.write_all(b"v6").await.unwrap();
                s.shutdown().await.unwrap();
                let mut back = Vec::new();
                s.read_to_end(&mut back).await.unwrap();
                assert_eq!(back, b"v6");
            }
            Err(e) => {
                assert!(!may_mark, "unexpected failure: {e}");
                assert!(
                    matches!(
                        e,
                        ClientError::Socket {
                            mark: Some(0x539),
                            ..
                        }
                    ),
                    "{e:?}"
                );
            }
        }
    })
    .await
}
