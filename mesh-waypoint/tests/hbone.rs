//! HBONE termination end to end: a real mTLS HBONE client opens a tunnel
//! to the waypoint with `:authority` = the service VIP:port; HTTP/1.1
//! inside it is routed by that authority (not the Host header), and RBAC
//! sees the tunnel peer's SPIFFE identity.
mod support;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster,
    rbac::v3::{
        permission::Rule,
        principal::{Authenticated, Identifier},
        Permission, Policy, Principal, Rbac,
    },
    route::v3::{
        route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
        RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    },
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_hbone::test_ca::TestCa;
use mesh_hbone::{ClientOptions, HboneClient, HboneServer, Identity};
use mesh_waypoint::{
    app::wiring,
    route::{Deps, Proxy},
    server::hbone::TunnelHandler,
};
use tokio::net::TcpListener;

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = format!("reviews-v1 {}", req.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn allow_only(principal: &str) -> Rbac {
    Rbac {
        action: 0,
        policies: HashMap::from([(
            "ns[default]-policy[reviews-viewer]-rule[0]".to_string(),
            Policy {
                permissions: vec![Permission {
                    rule: Some(Rule::Any(true)),
                }],
                principals: vec![Principal {
                    identifier: Some(Identifier::Authenticated(Authenticated {
                        principal_name: Some(StringMatcher {
                            ignore_case: false,
                            match_pattern: Some(MatchPattern::Exact(principal.into())),
                        }),
                    })),
                }],
                ..Default::default()
            },
        )]),
        audit_logging_options: None,
    }
}

async fn get_through_tunnel(
    client: &HboneClient,
    src: &Identity,
    gw: SocketAddr,
    waypoint: &Identity,
) -> (u16, String) {
    let vip: SocketAddr = "10.96.0.20:9080".parse().unwrap();
    let tunnel = client.connect(src, gw, waypoint, vip).await.unwrap();
    // A Host the route table does not know: the tunnel authority decides.
    support::get_over(tunnel, "whatever", "/reviews/1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_authority_picks_the_vhost_and_rbac_sees_the_peer() {
    let ca = TestCa::new("waypoint test CA");
    let waypoint_id: Identity = "spiffe://cluster.local/ns/default/sa/waypoint"
        .parse()
        .unwrap();
    let sleep: Identity = "spiffe://cluster.local/ns/default/sa/sleep"
        .parse()
        .unwrap();
    let other: Identity = "spiffe://cluster.local/ns/default/sa/other"
        .parse()
        .unwrap();

    let rc = RouteConfiguration {
        name: "waypoint/default/w".into(),
        virtual_hosts: vec![VirtualHost {
            name: "reviews.default.svc.cluster.local:9080".into(),
            domains: vec!["10.96.0.20:9080".into(), "reviews:9080".into()],
            routes: vec![Route {
                name: "default/reviews/0".into(),
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster("v1".into())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let cfg = support::rbac_then_router(&rc, allow_only(&sleep.to_string()));
    let clusters = wiring::ClusterManager::new(wiring::UpstreamOptions {
        hbone: None,
        identity: None,
    });
    let addr = upstream().await;
    clusters.apply_resources(
        [&Cluster {
            name: "v1".into(),
            ..Default::default()
        }],
        [&support::cla("v1", addr)],
        Default::default(),
    );
    let proxy = Proxy::new(Arc::new(cfg), Deps::new(clusters.clone()));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let handler = Arc::new(TunnelHandler::new(proxy, clusters, shutdown));
    tokio::spawn(HboneServer::new(ca.store(&[&waypoint_id]), handler).serve(listener));

    let run = async {
        let c = HboneClient::new(ca.store(&[&sleep]), ClientOptions::default());
        assert_eq!(
            get_through_tunnel(&c, &sleep, gw, &waypoint_id).await,
            (200, "reviews-v1 /reviews/1".into())
        );
        let c = HboneClient::new(ca.store(&[&other]), ClientOptions::default());
        assert_eq!(
            get_through_tunnel(&c, &other, gw, &waypoint_id).await,
            (403, "RBAC: access denied".into())
        );
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("tunnel test timed out");
}
