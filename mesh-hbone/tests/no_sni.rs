//! Which certificate a server shows, with and without SNI: ztunnel dials a
//! pod's own listener and sends no SNI, so a server bound to one identity
//! presents it; SNI naming anyone else is refused, and a server holding
//! several identities without being bound to one cannot choose.

mod support;

use mesh_hbone::{sni_for, ClientError, ClientOptions, HboneClient};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client(store: std::sync::Arc<mesh_hbone::CertStore>, send_sni: bool) -> HboneClient {
    HboneClient::new(
        store,
        ClientOptions {
            send_sni,
            ..ClientOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_server_presents_its_identity_to_a_client_without_sni() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b, d) = (id("ns-a", "a"), id("ns-b", "b"), id("ns-d", "d"));
        // The store holds B and D (a node's agent); the listener is B's.
        let server = start_pinned_server(ca.store(&[&b, &d]), &b).await;
        let mut tunnel = client(ca.store(&[&a]), false)
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        tunnel.write_all(b"ping").await.unwrap();
        tunnel.shutdown().await.unwrap();
        let mut back = Vec::new();
        tunnel.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ping");
        let request = server.handler.last_request();
        assert_eq!(request.local_identity, b);
        assert_eq!(request.peer, a);
        // Our SNI form naming the listener's own identity is accepted too.
        client(ca.store(&[&a]), true)
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_server_refuses_sni_naming_another_identity() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b, d) = (id("ns-a", "a"), id("ns-b", "b"), id("ns-d", "d"));
        let server = start_pinned_server(ca.store(&[&b, &d]), &b).await;
        let err = client(ca.store(&[&a]), true)
            .connect(&a, server.addr, &d, authority(ECHO_PORT))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::RejectedByPeer { .. }),
            "SNI {} on B's listener: {err:?}",
            sni_for(&d)
        );
        // Without SNI it shows B, which a client expecting D refuses.
        let err = client(ca.store(&[&a]), false)
            .connect(&a, server.addr, &d, authority(ECHO_PORT))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::ServerIdentityMismatch { ref presented, .. } if *presented == b),
            "{err:?}"
        );
        assert_eq!(server.handler.calls(), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_server_picks_by_sni_or_its_only_identity() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b, d) = (id("ns-a", "a"), id("ns-b", "b"), id("ns-d", "d"));
        // Several identities, no SNI: nothing to choose by.
        let node = start_server(ca.store(&[&b, &d])).await;
        let err = client(ca.store(&[&a]), false)
            .connect(&a, node.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::RejectedByPeer { .. }), "{err:?}");
        client(ca.store(&[&a]), true)
            .connect(&a, node.addr, &d, authority(ECHO_PORT))
            .await
            .unwrap();
        assert_eq!(node.handler.last_request().local_identity, d);
        // One identity (a waypoint): shown without SNI.
        let waypoint = start_server(ca.store(&[&b])).await;
        client(ca.store(&[&a]), false)
            .connect(&a, waypoint.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap();
        assert_eq!(waypoint.handler.last_request().local_identity, b);
    })
    .await
}
