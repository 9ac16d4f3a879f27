//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use envoy_types::pb::envoy::{
    config::{rbac::v3::Rbac, route::v3::RouteConfiguration},
    extensions::filters::http::rbac::v3::Rbac as RbacFilter,
};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use mesh_waypoint::config::{rbac::compile_filter, route_config, ActiveConfig, HttpFilter};

use envoy_types::pb::envoy::config::{
    core::v3::{address, socket_address::PortSpecifier, Address, SocketAddress},
    endpoint::v3::{
        lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
        LocalityLbEndpoints,
    },
};

/// A ClusterLoadAssignment of one healthy endpoint.
pub fn cla(cluster: &str, addr: SocketAddr) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: addr.ip().to_string(),
                            port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                })),
                health_status: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `rc`'s routes behind one RBAC filter with `rules`, then the router.
pub fn rbac_then_router(rc: &RouteConfiguration, rules: Rbac) -> ActiveConfig {
    let rules = compile_filter(
        &RbacFilter {
            rules: Some(rules),
            ..Default::default()
        },
        "t",
    )
    .unwrap()
    .map(Arc::new);
    ActiveConfig {
        listener: None,
        table: Arc::new(route_config::translate(rc).unwrap()),
        filters: vec![
            HttpFilter::Rbac {
                name: "envoy.filters.http.rbac".into(),
                rules,
            },
            HttpFilter::Router,
        ],
        generation: 1,
    }
}

/// One HTTP/1.1 `GET path` with `host` over `io` (an HBONE tunnel): the
/// status and the body as text.
pub async fn get_over<I>(io: I, host: &str, path: &str) -> (u16, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
