//! In-process end to end: a scripted Delta ADS server feeds hand-built
//! Listener / RouteConfiguration / Cluster / ClusterLoadAssignment /
//! Address resources through the real xDS client (with the waypoint's
//! validator) into the route stack and the cluster manager; real hyper
//! upstream servers on 127.0.0.1; real HTTP/1.1 and h2 requests to the
//! plain listener.
mod support;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use envoy_types::pb::envoy::{
    config::{
        cluster::v3::Cluster,
        listener::v3::{filter, Filter, FilterChain, Listener},
        route::v3::{
            header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
            route_match::PathSpecifier, HeaderMatcher, Route, RouteAction, RouteConfiguration,
            RouteMatch, VirtualHost,
        },
    },
    extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter,
        Rds,
    },
    r#type::matcher::v3::RegexMatcher,
};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_testkit::eventually_async;
use mesh_waypoint::{
    app::{self, wiring},
    config::ActiveConfig,
    route::{Deps, Proxy},
    server,
};
use mesh_xds::{
    proto::{
        envoy_discovery::{DeltaDiscoveryResponse, Resource},
        wkt,
    },
    test_ads::{self, ScriptedStream},
    Backoff, XdsClient, XdsClientConfig, ADDRESS_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL,
    LISTENER_TYPE_URL, ROUTE_TYPE_URL,
};
use prost::Message;
use tokio::net::TcpListener;

const NAME: &str = "waypoint/default/w";
const LIMIT: Duration = Duration::from_secs(10);

fn any<M: Message>(type_url: &str, m: &M) -> wkt::Any {
    wkt::Any {
        type_url: type_url.to_string(),
        value: m.encode_to_vec(),
    }
}

fn response(
    type_url: &str,
    nonce: &str,
    resources: Vec<(String, wkt::Any)>,
) -> DeltaDiscoveryResponse {
    DeltaDiscoveryResponse {
        type_url: type_url.into(),
        nonce: nonce.into(),
        resources: resources
            .into_iter()
            .map(|(name, a)| Resource {
                name,
                version: nonce.into(),
                resource: Some(a),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

// ---- Envoy resources ----

fn listener() -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: NAME.into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: None,
            route_config_name: NAME.into(),
        })),
        http_filters: ["envoy.filters.http.fault", "envoy.filters.http.router"]
            .iter()
            .map(|n| HttpFilter {
                name: n.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(wkt::Any {
                    type_url: if n.ends_with("fault") {
                        "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
                            .into()
                    } else {
                        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router".into()
                    },
                    value: vec![],
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    Listener {
        name: NAME.into(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(
                    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    &hcm,
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

const V1: &str = "outbound|9080|v1|reviews.default.svc.cluster.local";
const V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";

fn routes(jason_regex: &str) -> RouteConfiguration {
    let to = |c: &str| {
        Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(c.into())),
            ..Default::default()
        }))
    };
    RouteConfiguration {
        name: NAME.into(),
        virtual_hosts: vec![VirtualHost {
            name: "reviews.default.svc.cluster.local:9080".into(),
            domains: vec![
                "reviews.default.svc.cluster.local:9080".into(),
                "reviews:9080".into(),
                "reviews".into(),
            ],
            routes: vec![
                Route {
                    name: "default/reviews/0".into(),
                    r#match: Some(RouteMatch {
                        path_specifier: Some(PathSpecifier::Prefix("/".into())),
                        headers: vec![HeaderMatcher {
                            name: "end-user".into(),
                            header_match_specifier: Some(HeaderMatchSpecifier::SafeRegexMatch(
                                RegexMatcher {
                                    regex: jason_regex.into(),
                                    engine_type: None,
                                },
                            )),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    action: to(V2),
                    ..Default::default()
                },
                Route {
                    name: "default/reviews/1".into(),
                    r#match: Some(RouteMatch {
                        path_specifier: Some(PathSpecifier::Prefix("/".into())),
                        ..Default::default()
                    }),
                    action: to(V1),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}

// ---- upstream servers ----

/// An HTTP/1.1 + h2 server answering `<name> <path>`, echoing the Host it got.
async fn upstream(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let body = format!("{name} {}", req.uri().path());
                        let resp = hyper::Response::builder()
                            .header("x-upstream", name)
                            .header("x-host", host)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

// ---- clients ----

async fn get_h1(
    waypoint: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(waypoint).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = hyper::Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = send
        .send_request(b.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get_h2(waypoint: SocketAddr, authority: &str, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(waypoint).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!("http://{authority}{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_to_routed_requests_and_nack_keeps_last_good() {
    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;

    // ADS server.
    let mut ads = test_ads::serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let ads_addr = ads.addr();

    // The waypoint, wired as app::run wires it (without certificates).
    let clusters = wiring::ClusterManager::new(wiring::UpstreamOptions {
        hbone: None,
        identity: None,
    });
    let proxy = Proxy::new(
        Arc::new(ActiveConfig::default()),
        Deps::new(clusters.clone()),
    );
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut xcfg = XdsClientConfig::new(
        format!("http://{ads_addr}"),
        "waypoint~127.0.0.1~w-0.default~default.svc.cluster.local",
    );
    xcfg.type_urls = app::TYPE_URLS.iter().map(|t| t.to_string()).collect();
    xcfg.validator = Some(wiring::validator());
    xcfg.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    let (_client, rx) = XdsClient::spawn(xcfg);
    tokio::spawn(app::follow(
        rx,
        proxy.clone(),
        clusters.clone(),
        synced.clone(),
        NAME.into(),
    ));
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let waypoint = plain.local_addr().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server::http::serve(plain, proxy.clone(), stop_rx));

    // Serve each subscription once.
    let ScriptedStream {
        mut requests,
        responses,
        ..
    } = ads.accept().await;
    let mut by_type: HashMap<String, Vec<(String, wkt::Any)>> = HashMap::from([
        (
            LISTENER_TYPE_URL.into(),
            vec![(NAME.into(), any(LISTENER_TYPE_URL, &listener()))],
        ),
        (
            ROUTE_TYPE_URL.into(),
            vec![(NAME.into(), any(ROUTE_TYPE_URL, &routes("jas.n")))],
        ),
        (
            CLUSTER_TYPE_URL.into(),
            [V1, V2]
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        any(
                            CLUSTER_TYPE_URL,
                            &Cluster {
                                name: c.to_string(),
                                ..Default::default()
                            },
                        ),
                    )
                })
                .collect(),
        ),
        (
            ENDPOINT_TYPE_URL.into(),
            vec![
                (V1.into(), any(ENDPOINT_TYPE_URL, &support::cla(V1, v1))),
                (V2.into(), any(ENDPOINT_TYPE_URL, &support::cla(V2, v2))),
            ],
        ),
        (ADDRESS_TYPE_URL.into(), vec![]),
    ]);
    for _ in 0..5 {
        let req = bounded("subscription", requests.message())
            .await
            .unwrap()
            .unwrap();
        let resources = by_type
            .remove(&req.type_url)
            .expect("one subscription per type");
        responses
            .send(Ok(response(&req.type_url, "1", resources)))
            .await
            .unwrap();
    }
    eventually_async("synced", LIMIT, || async {
        synced.load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;

    // HTTP/1.1: header match → v2, default → v1, unknown host → 404.
    assert_eq!(
        get_h1(
            waypoint,
            "reviews:9080",
            "/reviews/0",
            &[("end-user", "jason")]
        )
        .await,
        (200, "v2 /reviews/0".into())
    );
    assert_eq!(
        get_h1(waypoint, "reviews:9080", "/reviews/0", &[]).await,
        (200, "v1 /reviews/0".into())
    );
    assert_eq!(get_h1(waypoint, "ratings:9080", "/", &[]).await.0, 404);
    // h2 (prior knowledge): the authority picks the vhost.
    assert_eq!(
        get_h2(waypoint, "reviews.default.svc.cluster.local:9080", "/h2").await,
        (200, "v1 /h2".into())
    );

    // A bad regex is NACKed naming the field; the last good routes keep serving.
    for _ in 0..5 {
        let ack = bounded("ack", requests.message()).await.unwrap().unwrap();
        assert!(
            ack.error_detail.is_none(),
            "first push is ACKed: {:?}",
            ack.error_detail
        );
    }
    responses
        .send(Ok(response(
            ROUTE_TYPE_URL,
            "2",
            vec![(NAME.into(), any(ROUTE_TYPE_URL, &routes("(jason")))],
        )))
        .await
        .unwrap();
    let nack = bounded("nack", requests.message()).await.unwrap().unwrap();
    let detail = nack.error_detail.expect("NACK").message;
    assert!(
        detail.contains("virtual_hosts[0].routes[0].match.headers[0].safe_regex_match.regex"),
        "{detail}"
    );
    assert_eq!(
        get_h1(waypoint, "reviews", "/again", &[("end-user", "jason")]).await,
        (200, "v2 /again".into())
    );

    // A good update applies: jason now matches nothing special.
    responses
        .send(Ok(response(
            ROUTE_TYPE_URL,
            "3",
            vec![(NAME.into(), any(ROUTE_TYPE_URL, &routes("nobody")))],
        )))
        .await
        .unwrap();
    eventually_async("route update", LIMIT, || async {
        let (status, body) = get_h1(waypoint, "reviews", "/x", &[("end-user", "jason")]).await;
        if body == "v1 /x" {
            Ok(())
        } else {
            Err(format!("{status} {body:?}"))
        }
    })
    .await;
    let dump = proxy.config();
    assert_eq!(dump.table.vhosts[0].routes.len(), 2);
    assert_eq!(dump.listener.as_ref().unwrap().name, NAME);
}
