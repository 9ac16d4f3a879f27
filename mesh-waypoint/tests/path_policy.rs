//! Path-based policy through the real request path: the plain listener,
//! the route stack with a DENY `/admin*` RBAC filter and a real upstream
//! that echoes the path it received. Requests are written as raw bytes so
//! no client tidies the path first.
mod support;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster,
    rbac::v3::{permission::Rule, principal::Identifier, Permission, Policy, Principal, Rbac},
    route::v3::{
        route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
        RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    },
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    path_matcher, string_matcher::MatchPattern, PathMatcher, StringMatcher,
};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_waypoint::{
    app::wiring,
    route::{Deps, Proxy},
    server,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// An upstream answering `upstream <path-and-query>`.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = format!("upstream {}", req.uri());
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

/// `DENY` when the path starts with `/admin` (what the control plane makes
/// of `paths: ["/admin*"]`).
fn deny_admin() -> Rbac {
    Rbac {
        action: 1,
        policies: HashMap::from([(
            "ns[default]-policy[no-admin]-rule[0]".to_string(),
            Policy {
                permissions: vec![Permission {
                    rule: Some(Rule::UrlPath(PathMatcher {
                        rule: Some(path_matcher::Rule::Path(StringMatcher {
                            ignore_case: false,
                            match_pattern: Some(MatchPattern::Prefix("/admin".into())),
                        })),
                    })),
                }],
                principals: vec![Principal {
                    identifier: Some(Identifier::Any(true)),
                }],
                ..Default::default()
            },
        )]),
        audit_logging_options: None,
    }
}

async fn waypoint() -> SocketAddr {
    let rc = RouteConfiguration {
        name: "waypoint/default/w".into(),
        virtual_hosts: vec![VirtualHost {
            name: "reviews.default.svc.cluster.local:9080".into(),
            domains: vec!["reviews:9080".into()],
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
    let cfg = support::rbac_then_router(&rc, deny_admin());
    let clusters = wiring::ClusterManager::new(wiring::UpstreamOptions {
        hbone: None,
        identity: None,
    });
    clusters.apply_resources(
        [&Cluster {
            name: "v1".into(),
            ..Default::default()
        }],
        [&support::cla("v1", upstream().await)],
        Default::default(),
    );
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

/// Sends `GET <target>` as raw HTTP/1.1; returns the status and body.
async fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nhost: reviews:9080\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_do_not_bypass_a_deny_and_upstream_sees_the_normalised_path() {
    let run = async {
        let addr = waypoint().await;
        for target in [
            "/admin",
            "//admin",
            "/./admin",
            "/%61dmin",
            "/x/../admin",
            "/x/%2E%2E/admin/users",
            "/public/../../admin",
            "///admin//x",
        ] {
            assert_eq!(get(addr, target).await.0, 403, "GET {target}");
        }
        for target in [
            "/admin%2Fx",
            "/x%2f..%2fadmin",
            "/x%5Cadmin",
            "/x%5c..%5cadmin",
        ] {
            assert_eq!(get(addr, target).await.0, 400, "GET {target}");
        }
        // What passes reaches the upstream normalised, query untouched.
        assert_eq!(
            get(addr, "/public/./a//b/../%7Euser?q=/../admin").await,
            (200, "upstream /public/a/~user?q=/../admin".to_string())
        );
        assert_eq!(
            get(addr, "/public/%e2%82%ac").await,
            (200, "upstream /public/%E2%82%AC".to_string())
        );
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("path policy test timed out");
}
