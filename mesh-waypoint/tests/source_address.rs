//! The source address of a tunnelled request: the `forwarded: for=` pod
//! address counts only when the Address view knows it as a workload with
//! the mTLS peer's identity. Real mTLS HBONE clients tunnel to the
//! waypoint; `ipBlocks` (Envoy `direct_remote_ip`), `remoteIpBlocks`
//! (`remote_ip`) and `sourceLabels` routes (`source_ips` metadata) are
//! checked against that verified address.
mod support;

use std::{collections::HashMap, net::IpAddr, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster,
    core::v3::{CidrRange, Metadata},
    rbac::v3::{permission::Rule, principal::Identifier, Permission, Policy, Principal, Rbac},
    route::v3::{
        route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
        RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    },
};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_hbone::{test_ca::TestCa, ClientOptions, HboneClient, HboneServer, Identity};
use mesh_waypoint::{
    app::wiring,
    config::{rbac::compile_filter, route_config, ActiveConfig, HttpFilter},
    route::{Deps, Proxy},
    server::hbone::TunnelHandler,
    upstream::{Directory, WorkloadEntry},
};
use mesh_xds::proto::wkt;
use tokio::net::TcpListener;

const SLEEP_IP: &str = "10.244.1.5";
const OTHER_IP: &str = "10.244.2.7";
const VIP: &str = "10.96.0.20:9080";

fn id(sa: &str) -> Identity {
    format!("spiffe://cluster.local/ns/default/sa/{sa}")
        .parse()
        .unwrap()
}

fn workload(name: &str, ip: &str) -> WorkloadEntry {
    WorkloadEntry {
        workload: mesh_xds::workload::Workload {
            uid: format!("Kubernetes//Pod/default/{name}"),
            name: name.into(),
            namespace: "default".into(),
            service_account: name.into(),
            trust_domain: "cluster.local".into(),
            workload_name: name.into(),
            canonical_name: name.into(),
            canonical_revision: "v1".into(),
            node: "node1".into(),
            cluster_id: "Kubernetes".into(),
            ips: vec![ip.parse().unwrap()],
            hostname: None,
            mesh: true,
            gateway: Some("192.168.0.1:15008".parse().unwrap()),
            authorization_policies: vec![],
            probe_ports: vec![],
        },
        identity: Some(id(name)),
    }
}

/// An upstream answering `<name> <path>`.
async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let body = format!("{name} {}", req.uri().path());
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn cidr(ip: &str, len: u32) -> CidrRange {
    CidrRange {
        address_prefix: ip.into(),
        prefix_len: Some(wkt::UInt32Value { value: len }),
    }
}

fn rbac(action: i32, principal: Identifier) -> Option<Arc<mesh_waypoint::config::rbac::RbacRules>> {
    let rules = Rbac {
        action,
        policies: HashMap::from([(
            "ns[default]-policy[p]-rule[0]".to_string(),
            Policy {
                permissions: vec![Permission {
                    rule: Some(Rule::Any(true)),
                }],
                principals: vec![Principal {
                    identifier: Some(principal),
                }],
                ..Default::default()
            },
        )]),
        audit_logging_options: None,
    };
    compile_filter(
        &envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac {
            rules: Some(rules),
            ..Default::default()
        },
        "t",
    )
    .unwrap()
    .map(Arc::new)
}

fn route(name: &str, cluster: &str, source_ips: Option<&[&str]>) -> Route {
    let metadata = source_ips.map(|ips| Metadata {
        filter_metadata: HashMap::from([(
            "mesh".to_string(),
            wkt::Struct {
                fields: [(
                    "source_ips".to_string(),
                    wkt::Value {
                        kind: Some(wkt::value::Kind::ListValue(wkt::ListValue {
                            values: ips
                                .iter()
                                .map(|ip| wkt::Value {
                                    kind: Some(wkt::value::Kind::StringValue(ip.to_string())),
                                })
                                .collect(),
                        })),
                    },
                )]
                .into_iter()
                .collect(),
            },
        )]),
        ..Default::default()
    });
    Route {
        name: name.into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        metadata,
        ..Default::default()
    }
}

/// A waypoint HBONE server with these routes and filters, knowing the
/// `sleep` and `other` workloads; returns its address.
async fn waypoint(ca: &TestCa, routes: Vec<Route>, filters: Vec<HttpFilter>) -> SocketAddr {
    let rc = RouteConfiguration {
        name: "waypoint/default/w".into(),
        virtual_hosts: vec![VirtualHost {
            name: "reviews.default.svc.cluster.local:9080".into(),
            domains: vec![VIP.into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    };
    let cfg = ActiveConfig {
        listener: None,
        table: Arc::new(route_config::translate(&rc).unwrap()),
        filters,
        generation: 1,
    };
    let clusters = wiring::ClusterManager::new(wiring::UpstreamOptions {
        hbone: None,
        identity: None,
    });
    clusters.apply_resources(
        [
            &Cluster {
                name: "v1".into(),
                ..Default::default()
            },
            &Cluster {
                name: "v2".into(),
                ..Default::default()
            },
        ],
        [
            &support::cla("v1", upstream("v1").await),
            &support::cla("v2", upstream("v2").await),
        ],
        Directory::build(
            [workload("sleep", SLEEP_IP), workload("other", OTHER_IP)],
            [],
        ),
    );
    let proxy = Proxy::new(Arc::new(cfg), Deps::new(clusters.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = listener.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let handler = Arc::new(TunnelHandler::new(proxy, clusters, shutdown));
    let server = HboneServer::new(ca.store(&[&id("waypoint")]), handler);
    tokio::spawn(async move {
        let _keep = stop;
        server.serve(listener).await
    });
    gw
}

/// `GET /` as `who`, claiming to come from `claimed`.
async fn get(ca: &TestCa, gw: SocketAddr, who: &str, claimed: &str) -> (u16, String) {
    let src = id(who);
    let client = HboneClient::new(ca.store(&[&src]), ClientOptions::default());
    let ip: IpAddr = claimed.parse().unwrap();
    let tunnel = client
        .connect_from(&src, gw, &id("waypoint"), VIP.parse().unwrap(), Some(ip))
        .await
        .unwrap();
    support::get_over(tunnel, "reviews:9080", "/").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_blocks_match_the_verified_source_pod_not_the_node_or_a_claim() {
    let ca = TestCa::new("waypoint test CA");
    let run = async {
        // ALLOW remoteIpBlocks 10.244.0.0/16, then DENY ipBlocks sleep's IP.
        let filters = vec![
            HttpFilter::Rbac {
                name: "envoy.filters.http.rbac".into(),
                rules: rbac(0, Identifier::RemoteIp(cidr("10.244.0.0", 16))),
            },
            HttpFilter::Rbac {
                name: "envoy.filters.http.rbac.deny".into(),
                rules: rbac(1, Identifier::DirectRemoteIp(cidr(SLEEP_IP, 32))),
            },
            HttpFilter::Router,
        ];
        let gw = waypoint(&ca, vec![route("all", "v1", None)], filters).await;
        // The DENY names the pod, and the pod is who asks.
        assert_eq!(get(&ca, gw, "sleep", SLEEP_IP).await.0, 403);
        assert_eq!(get(&ca, gw, "other", OTHER_IP).await, (200, "v1 /".into()));
        // `other` claiming an address that is not its own: not believed,
        // so neither the ALLOW nor escaping the DENY works.
        assert_eq!(get(&ca, gw, "other", "10.244.9.9").await.0, 403);
        assert_eq!(get(&ca, gw, "sleep", OTHER_IP).await.0, 403);
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("source address test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_routes_need_the_verified_source_pod() {
    let ca = TestCa::new("waypoint test CA");
    let run = async {
        let routes = vec![
            route("from-other", "v2", Some(&[OTHER_IP])),
            route("rest", "v1", None),
        ];
        let gw = waypoint(&ca, routes, vec![HttpFilter::Router]).await;
        assert_eq!(get(&ca, gw, "other", OTHER_IP).await, (200, "v2 /".into()));
        assert_eq!(get(&ca, gw, "sleep", OTHER_IP).await, (200, "v1 /".into()));
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("source route test timed out");
}
