//! The Delta ADS client against a scripted in-process ADS server: pushes,
//! ACK nonces, NACKs naming the bad resource, removals, server restart with
//! `initial_resource_versions`, and TLS.
use std::{collections::HashMap, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use mesh_testkit::{eventually_async, eventually_watch, holds};
use mesh_xds::{
    proto::{
        envoy_discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource},
        istio_security::{Action, Authorization, Scope},
        istio_workload::{address, Address, NetworkAddress, Port, Service, Workload},
        to_any,
    },
    test_ads::{self, ScriptedAds, ScriptedStream},
    transport, Backoff, XdsClient, XdsClientConfig, XdsTls, ADDRESS_TYPE_URL,
    AUTHORIZATION_TYPE_URL,
};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn workload(uid: &str, ip: [u8; 4]) -> Workload {
    Workload {
        uid: uid.into(),
        name: uid.rsplit('/').next().unwrap().into(),
        namespace: "default".into(),
        addresses: vec![ip.to_vec()],
        ..Default::default()
    }
}

fn address_resource(name: &str, version: &str, a: address::Type) -> Resource {
    Resource {
        name: name.into(),
        version: version.into(),
        resource: Some(to_any(ADDRESS_TYPE_URL, &Address { r#type: Some(a) })),
        ..Default::default()
    }
}

fn response(
    type_url: &str,
    nonce: &str,
    resources: Vec<Resource>,
    removed: &[&str],
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        type_url: type_url.into(),
        nonce: nonce.into(),
        resources,
        removed_resources: removed.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn config(addr: SocketAddr) -> XdsClientConfig {
    let mut cfg = XdsClientConfig::new(format!("http://{addr}"), "node-a");
    cfg.node_metadata
        .insert("NAMESPACE".into(), "mesh-system".into());
    cfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    cfg
}

async fn subscribe(stream: &mut ScriptedStream) -> HashMap<String, DeltaDiscoveryRequest> {
    let mut by_type = HashMap::new();
    for _ in 0..2 {
        let req = stream.next().await;
        assert!(req.response_nonce.is_empty());
        assert!(req.resource_names_subscribe.is_empty(), "wildcard");
        by_type.insert(req.type_url.clone(), req);
    }
    by_type
}

#[tokio::test]
async fn push_ack_nack_and_remove() {
    let mut server = test_ads::serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let (handle, mut rx) = XdsClient::spawn(config(server.addr()));
    let mut stream = server.accept().await;

    let subs = subscribe(&mut stream).await;
    let first = &subs[ADDRESS_TYPE_URL];
    let node = first.node.as_ref().expect("node on the first request");
    assert_eq!(node.id, "node-a");
    let meta = &node.metadata.as_ref().unwrap().fields["NAMESPACE"];
    assert_eq!(
        meta.kind,
        Some(mesh_xds::proto::wkt::value::Kind::StringValue(
            "mesh-system".into()
        ))
    );
    assert!(first.initial_resource_versions.is_empty());
    assert!(subs.contains_key(AUTHORIZATION_TYPE_URL));
    eventually_watch("connected", LIMIT, &mut rx, |s| holds(s.connected, s)).await;

    // Push a workload and a service: applied, then ACKed with the nonce.
    let svc = Service {
        name: "web".into(),
        namespace: "default".into(),
        hostname: "web.default.svc.cluster.local".into(),
        addresses: vec![NetworkAddress {
            network: String::new(),
            address: vec![10, 96, 0, 10],
            ..Default::default()
        }],
        ports: vec![Port {
            service_port: 80,
            target_port: 8080,
            ..Default::default()
        }],
        ..Default::default()
    };
    let w1 = workload("Kubernetes//Pod/default/w1", [10, 244, 0, 5]);
    stream
        .push(response(
            ADDRESS_TYPE_URL,
            "n1",
            vec![
                address_resource(&w1.uid, "v1", address::Type::Workload(w1.clone())),
                address_resource(
                    "default/web.default.svc.cluster.local",
                    "s1",
                    address::Type::Service(svc.clone()),
                ),
            ],
            &[],
        ))
        .await;
    let ack = stream.next().await;
    assert_eq!(
        (ack.type_url.as_str(), ack.response_nonce.as_str()),
        (ADDRESS_TYPE_URL, "n1")
    );
    assert!(ack.error_detail.is_none());
    let snap = rx.borrow().clone();
    assert_eq!(snap.workload(&w1.uid), Some(&w1));
    assert_eq!(
        snap.service("default/web.default.svc.cluster.local"),
        Some(&svc)
    );
    assert_eq!(snap.acked_nonce[ADDRESS_TYPE_URL], "n1");
    assert!(snap.synced.contains(ADDRESS_TYPE_URL));
    assert_eq!(snap.get(ADDRESS_TYPE_URL, &w1.uid).unwrap().version, "v1");

    // A response with one malformed resource: NACKed, nothing of it applied.
    let w2 = workload("Kubernetes//Pod/default/w2", [10, 244, 0, 6]);
    let mut bad = workload("Kubernetes//Pod/default/bad", [0; 4]);
    bad.addresses = vec![vec![10, 0, 0]];
    stream
        .push(response(
            ADDRESS_TYPE_URL,
            "n2",
            vec![
                address_resource(&w2.uid, "v1", address::Type::Workload(w2.clone())),
                address_resource(&bad.uid.clone(), "v1", address::Type::Workload(bad)),
            ],
            &[&w1.uid],
        ))
        .await;
    let nack = stream.next().await;
    assert_eq!(nack.response_nonce, "n2");
    let detail = nack.error_detail.expect("NACK carries error_detail");
    assert!(
        detail.message.contains("Kubernetes//Pod/default/bad"),
        "{}",
        detail.message
    );
    assert!(
        detail.message.contains("workload.addresses[0]"),
        "{}",
        detail.message
    );
    assert_eq!(detail.code, 3);
    let snap = rx.borrow().clone();
    assert_eq!(
        snap.workload(&w1.uid),
        Some(&w1),
        "removal in the NACKed response not applied"
    );
    assert!(snap.workload(&w2.uid).is_none());
    assert_eq!(snap.acked_nonce[ADDRESS_TYPE_URL], "n1");
    assert!(snap
        .last_error
        .as_deref()
        .unwrap()
        .contains("workload.addresses[0]"));

    // Removal.
    stream
        .push(response(
            ADDRESS_TYPE_URL,
            "n3",
            vec![],
            &["default/web.default.svc.cluster.local"],
        ))
        .await;
    let ack = stream.next().await;
    assert_eq!(ack.response_nonce, "n3");
    assert!(ack.error_detail.is_none());
    let snap = rx.borrow().clone();
    assert_eq!(snap.services().count(), 0);
    assert_eq!(snap.workloads().count(), 1);
    assert!(snap.last_error.is_none());

    // The other type is independent.
    let policy = Authorization {
        name: "deny-all".into(),
        namespace: "default".into(),
        scope: Scope::Namespace as i32,
        action: Action::Deny as i32,
        ..Default::default()
    };
    let res = Resource {
        name: "default/deny-all".into(),
        version: "p1".into(),
        resource: Some(to_any(AUTHORIZATION_TYPE_URL, &policy)),
        ..Default::default()
    };
    stream
        .push(response(AUTHORIZATION_TYPE_URL, "a1", vec![res], &[]))
        .await;
    let ack = stream.next().await;
    assert_eq!(
        (ack.type_url.as_str(), ack.response_nonce.as_str()),
        (AUTHORIZATION_TYPE_URL, "a1")
    );
    let snap = rx.borrow().clone();
    assert_eq!(snap.authorization("default/deny-all"), Some(&policy));
    assert_eq!(snap.authorizations().count(), 1);
    assert_eq!(snap.acked_nonce[ADDRESS_TYPE_URL], "n3");

    bounded("stop", handle.stop()).await;
    assert!(!rx.borrow().connected);
}

#[tokio::test]
async fn reconnects_with_initial_resource_versions() {
    let mut server = test_ads::serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let (handle, mut rx) = XdsClient::spawn(config(server.addr()));
    let mut stream = server.accept().await;
    subscribe(&mut stream).await;
    let w1 = workload("Kubernetes//Pod/default/w1", [10, 244, 0, 5]);
    stream
        .push(response(
            ADDRESS_TYPE_URL,
            "n1",
            vec![address_resource(
                &w1.uid,
                "v7",
                address::Type::Workload(w1.clone()),
            )],
            &[],
        ))
        .await;
    assert_eq!(stream.next().await.response_nonce, "n1");

    // The server goes away: the client keeps its data, marked disconnected.
    let addr = server.stop(vec![stream]).await;
    let snap = eventually_watch("disconnected", LIMIT, &mut rx, |s| holds(!s.connected, s)).await;
    assert_eq!(snap.workload(&w1.uid), Some(&w1));
    assert!(snap.last_error.is_some());
    // Let it fail to connect at least once while the port is closed: each
    // failed attempt publishes a snapshot (the one above was the stream's
    // end, or already a failed attempt).
    bounded("a failed reconnect", rx.changed()).await.unwrap();
    assert!(!rx.borrow().connected);
    assert_eq!(rx.borrow().workload(&w1.uid), Some(&w1));

    // Same port again.
    let listener = eventually_async("rebind", LIMIT, || TcpListener::bind(addr)).await;
    let mut server = test_ads::serve(listener);
    let mut stream = server.accept().await;
    let subs = subscribe(&mut stream).await;
    let addr_sub = &subs[ADDRESS_TYPE_URL];
    assert_eq!(
        addr_sub.node.as_ref().map(|n| n.id.as_str()),
        Some("node-a")
    );
    assert_eq!(
        addr_sub.initial_resource_versions,
        HashMap::from([(w1.uid.clone(), "v7".to_string())])
    );
    assert!(subs[AUTHORIZATION_TYPE_URL]
        .initial_resource_versions
        .is_empty());
    let snap = eventually_watch("reconnected", LIMIT, &mut rx, |s| holds(s.connected, s)).await;
    assert_eq!(snap.workload(&w1.uid), Some(&w1));

    // And the new stream works.
    stream
        .push(response(ADDRESS_TYPE_URL, "m1", vec![], &[&w1.uid]))
        .await;
    assert_eq!(stream.next().await.response_nonce, "m1");
    assert_eq!(rx.borrow().workloads().count(), 0);
    bounded("stop", handle.stop()).await;
}

struct TestPki {
    root_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn make_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let mut leaf =
        CertificateParams::new(vec!["mesh-control.mesh-system.svc".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    TestPki {
        root_pem: ca_cert.pem(),
        server_cert_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
    }
}

fn acceptor(pki: &TestPki) -> tokio_rustls::TlsAcceptor {
    let certs = transport::parse_certs(pki.server_cert_pem.as_bytes(), "server").unwrap();
    let key = transport::parse_key(pki.server_key_pem.as_bytes()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(transport::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

#[tokio::test]
async fn tls_stream_and_untrusted_server() {
    let pki = make_pki();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (service, mut streams) = ScriptedAds::service();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(transport::tls_incoming(listener, acceptor(&pki))),
    );

    // Verifying by IP SAN.
    let mut cfg = config(addr);
    cfg.endpoint = format!("https://{addr}");
    cfg.tls = Some(XdsTls {
        root_pem: pki.root_pem.clone().into_bytes(),
        client_cert: None,
        server_name: None,
    });
    let (handle, mut rx) = XdsClient::spawn(cfg.clone());
    let mut stream = bounded("tls stream", streams.recv()).await.unwrap();
    subscribe(&mut stream).await;
    let w1 = workload("Kubernetes//Pod/default/w1", [10, 244, 0, 5]);
    stream
        .push(response(
            ADDRESS_TYPE_URL,
            "t1",
            vec![address_resource(
                &w1.uid,
                "v1",
                address::Type::Workload(w1.clone()),
            )],
            &[],
        ))
        .await;
    assert_eq!(stream.next().await.response_nonce, "t1");
    let snap = eventually_watch("tls snapshot", LIMIT, &mut rx, |s| {
        holds(s.workloads().count() == 1, s)
    })
    .await;
    assert!(snap.connected);
    bounded("stop", handle.stop()).await;

    // Verifying by DNS name.
    cfg.tls.as_mut().unwrap().server_name = Some("mesh-control.mesh-system.svc".into());
    let (handle, mut rx) = XdsClient::spawn(cfg.clone());
    let mut stream = bounded("tls stream by name", streams.recv()).await.unwrap();
    subscribe(&mut stream).await;
    eventually_watch("connected by name", LIMIT, &mut rx, |s| {
        holds(s.connected, s)
    })
    .await;
    bounded("stop", handle.stop()).await;

    // A client trusting another CA never connects and says why.
    cfg.tls.as_mut().unwrap().root_pem = make_pki().root_pem.into_bytes();
    let (handle, mut rx) = XdsClient::spawn(cfg);
    let snap = eventually_watch("tls error", LIMIT, &mut rx, |s| {
        holds(s.last_error.is_some(), s)
    })
    .await;
    assert!(!snap.connected);
    let err = snap.last_error.clone().unwrap();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    bounded("stop", handle.stop()).await;
    server.abort();
}

#[tokio::test]
async fn bad_tls_settings_stop_the_client() {
    let mut cfg = config("127.0.0.1:1".parse().unwrap());
    cfg.tls = Some(XdsTls {
        root_pem: b"not pem".to_vec(),
        client_cert: None,
        server_name: None,
    });
    let (handle, mut rx) = XdsClient::spawn(cfg);
    let snap = eventually_watch("config error", LIMIT, &mut rx, |s| {
        holds(s.last_error.is_some(), s)
    })
    .await;
    assert!(snap
        .last_error
        .as_deref()
        .unwrap()
        .contains("no certificate in root PEM"));
    eventually_async("task ends", LIMIT, || async { handle.is_finished() }).await;
}
