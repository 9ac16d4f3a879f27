//! Both ends verify: the client insists on the expected server identity,
//! the server on a client chain from the trust bundle.

mod support;

use std::sync::Arc;

use mesh_hbone::{CertStore, ClientError, ClientOptions, HboneClient};
use mesh_testkit::{eventually_async, holds};
use support::*;
use tokio::net::TcpListener;

/// A TLS server that shows `cert` whatever SNI it is asked for, as an
/// impostor or a misrouted gateway would.
async fn impostor(cert: &mesh_hbone::WorkloadCert) -> std::net::SocketAddr {
    let mut config = rustls::ServerConfig::builder_with_provider(mesh_hbone::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain().to_vec(), cert.key().clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the test makes one connection.
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_presenting_another_identity_is_rejected() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b, c) = (id("ns-a", "a"), id("ns-b", "b"), id("ns-c", "c"));
        let b_cert = ca.issue(&b, 7);
        let gateway = impostor(&b_cert).await;
        let client = HboneClient::new(ca.store(&[&a]), ClientOptions::default());

        let err = client
            .connect(&a, gateway, &c, authority(ECHO_PORT))
            .await
            .unwrap_err();
        match &err {
            ClientError::ServerIdentityMismatch {
                expected,
                presented,
                gateway: g,
            } => {
                assert_eq!(expected, &c);
                assert_eq!(presented, &b);
                assert_eq!(*g, gateway);
            }
            other => panic!("expected an identity mismatch, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains("spiffe://cluster.local/ns/ns-b/sa/b"),
            "{err}"
        );
        assert_eq!(client.pooled_connections(), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_the_expected_identity_fails_the_handshake() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b, c) = (id("ns-a", "a"), id("ns-b", "b"), id("ns-c", "c"));
        // The real server only holds B, so the SNI for C matches nothing.
        let server = start_server(ca.store(&[&b])).await;
        let client = HboneClient::new(
            ca.store(&[&a]),
            ClientOptions {
                send_sni: true,
                ..ClientOptions::default()
            },
        );

        let err = client
            .connect(&a, server.addr, &c, authority(ECHO_PORT))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::RejectedByPeer { .. }),
            "expected the server to refuse the handshake, got {err:?}"
        );
        eventually_async("server counts the failed handshake", WAIT, || async {
            let n = server.stats.handshake_failures();
            holds(n == 1, &n)
        })
        .await;
        assert_eq!(server.handler.calls(), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_from_an_untrusted_ca_is_rejected() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let rogue = TestCa::new("rogue root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server = start_server(ca.store(&[&b])).await;
        // The client trusts the real mesh root (so it accepts the server) but
        // its own certificate comes from the rogue CA.
        let client_store = Arc::new(CertStore::new(ca.bundle()));
        client_store.insert(rogue.issue(&a, 666));
        let client = HboneClient::new(client_store, ClientOptions::default());

        let err = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap_err();
        match &err {
            ClientError::RejectedByPeer { src, alert, .. } => {
                assert_eq!(src, &a);
                assert!(alert.contains("UnknownCA"), "alert {alert}");
            }
            other => panic!("expected the server to reject our certificate, got {other:?}"),
        }
        eventually_async("server counts the failed handshake", WAIT, || async {
            let n = server.stats.handshake_failures();
            holds(n == 1, &n)
        })
        .await;
        assert_eq!(server.handler.calls(), 0);
        assert_eq!(server.stats.streams_accepted(), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_without_a_certificate_fails_before_dialling() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server = start_server(ca.store(&[&b])).await;
        let client = HboneClient::new(ca.store(&[]), ClientOptions::default());
        let err = client
            .connect(&a, server.addr, &b, authority(ECHO_PORT))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::NoCertificate { ref src } if src == &a),
            "{err:?}"
        );
        assert_eq!(server.stats.connections_accepted(), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_clients_are_refused() {
    bounded(async {
        let ca = TestCa::new("mesh root");
        let (a, b) = (id("ns-a", "a"), id("ns-b", "b"));
        let server = start_server(ca.store(&[&b])).await;
        let a_cert = ca.issue(&a, 9);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.bundle().certs()[0].clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(mesh_hbone::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(a_cert.chain().to_vec(), a_cert.key().clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(mesh_hbone::sni_for(&b)).unwrap();
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let result = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await;
        assert!(result.is_err(), "a TLS 1.2 handshake succeeded");
        eventually_async("server counts the failed handshake", WAIT, || async {
            let n = server.stats.handshake_failures();
            holds(n == 1, &n)
        })
        .await;
    })
    .await
}
