//! The HBONE connector end to end: a mesh endpoint is reached through a
//! real `mesh_hbone::HboneServer` standing in for its node agent, which
//! checks the waypoint's identity and relays to the endpoint.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use envoy_types::pb::envoy::config::cluster::v3::cluster;
use mesh_hbone::test_ca::TestCa;
use mesh_hbone::{handler_fn, ClientOptions, HboneClient, HboneServer, Identity};
use mesh_xds::proto::istio_workload::{
    gateway_address::Destination, GatewayAddress, NetworkAddress,
};

use crate::upstream::{
    cluster::tests::cla,
    directory::tests::workload,
    tests::live::{call, cluster, server},
    ClusterManager, Directory, UpstreamOptions, WorkloadEntry,
};

#[tokio::test]
async fn mesh_endpoint_is_reached_over_hbone_as_the_waypoint() {
    let ca = TestCa::new("waypoint test CA");
    let waypoint: Identity = "spiffe://cluster.local/ns/default/sa/waypoint"
        .parse()
        .unwrap();
    let reviews: Identity = "spiffe://cluster.local/ns/default/sa/reviews"
        .parse()
        .unwrap();
    // The endpoint, and its "node agent" holding the workload's certificate.
    let endpoint = server("reviews", 200, std::time::Duration::ZERO).await;
    let seen: Arc<Mutex<Vec<(Identity, SocketAddr)>>> = Arc::default();
    let agent = {
        let seen = seen.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = handler_fn(move |req| {
            seen.lock().unwrap().push((req.peer.clone(), req.authority));
            async move {
                tokio::net::TcpStream::connect(req.authority)
                    .await
                    .map_err(|_| http::StatusCode::BAD_GATEWAY)
            }
        });
        let server = HboneServer::new(ca.store(&[&reviews]), handler);
        tokio::spawn(server.serve(listener));
        addr
    };
    let mut w = workload("uid-reviews", [127, 0, 0, 1], true, Some([127, 0, 0, 1]));
    w.network_gateway = Some(GatewayAddress {
        destination: Some(Destination::Address(NetworkAddress {
            network: String::new(),
            address: vec![127, 0, 0, 1],
            ..Default::default()
        })),
        hbone_mtls_port: u32::from(agent.port()),
    });
    let dir = Directory::build([WorkloadEntry::from_proto("uid-reviews", &w)], []);
    let cm = ClusterManager::new(UpstreamOptions {
        hbone: Some(Arc::new(HboneClient::new(
            ca.store(&[&waypoint]),
            ClientOptions::default(),
        ))),
        identity: Some(waypoint.clone()),
    });
    let c = cluster("hb", cluster::LbPolicy::RoundRobin);
    cm.apply_resources([&c], [&cla("hb", &[endpoint.addr])], dir);
    let (status, body) = call(&cm, "hb").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "reviews HTTP/1.1");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(waypoint, endpoint.addr)]
    );
    let dump = cm.dump();
    assert_eq!(dump["endpoints"][0]["hbone"], true);
}

#[tokio::test]
async fn a_cancelled_h2_dial_does_not_block_the_pool() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    let ca = TestCa::new("waypoint test CA");
    let waypoint: Identity = "spiffe://cluster.local/ns/default/sa/waypoint"
        .parse()
        .unwrap();
    // A "node agent" that accepts TCP and never answers the TLS handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    let mut w = workload("uid-grpc", [127, 0, 0, 1], true, None);
    w.network_gateway = Some(GatewayAddress {
        destination: Some(Destination::Address(NetworkAddress {
            network: String::new(),
            address: vec![127, 0, 0, 1],
            ..Default::default()
        })),
        hbone_mtls_port: u32::from(gateway.port()),
    });
    let dir = Directory::build([WorkloadEntry::from_proto("uid-grpc", &w)], []);
    let cm = ClusterManager::new(UpstreamOptions {
        hbone: Some(Arc::new(HboneClient::new(
            ca.store(&[&waypoint]),
            ClientOptions::default(),
        ))),
        identity: Some(waypoint),
    });
    let mut c = cluster("h2c", cluster::LbPolicy::RoundRobin);
    c.typed_extension_protocol_options = [(
        crate::upstream::cluster::HTTP_PROTOCOL_OPTIONS.to_string(),
        crate::upstream::cluster::tests::protocol_options(true, None),
    )]
    .into();
    cm.apply_resources(
        [&c],
        [&cla("h2c", &["127.0.0.1:50051".parse().unwrap()])],
        dir,
    );
    for expected in 1..=2 {
        // A route timeout cancels the attempt while it dials.
        let r = tokio::time::timeout(Duration::from_millis(200), call(&cm, "h2c")).await;
        assert!(r.is_err());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while accepted.load(Ordering::SeqCst) < expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "attempt {expected} never dialled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!(cm.dump()["endpoints"][0]["connections"], 0);
}

#[tokio::test]
async fn without_an_hbone_client_mesh_workloads_are_plain_tcp() {
    let endpoint = server("reviews", 200, std::time::Duration::ZERO).await;
    let w = workload("uid-reviews", [127, 0, 0, 1], true, Some([127, 0, 0, 1]));
    let dir = Directory::build([WorkloadEntry::from_proto("uid-reviews", &w)], []);
    let cm = ClusterManager::new(UpstreamOptions::default());
    let c = cluster("plain", cluster::LbPolicy::RoundRobin);
    cm.apply_resources([&c], [&cla("plain", &[endpoint.addr])], dir);
    assert_eq!(call(&cm, "plain").await.unwrap().0, 200);
    assert_eq!(cm.dump()["endpoints"][0]["hbone"], false);
}
