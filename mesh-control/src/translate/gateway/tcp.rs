//! The L4 side of an ingress gateway: Envoy's `tcp_proxy` network filter
//! for a TCP server (the first `tcp[]` route of the bound VirtualServices
//! that matches the port, as Istio) and for a TLS server terminated
//! without HTTP; one destination gives `cluster`, several give
//! `weighted_clusters`. The stat prefix is the cluster's name (Istio's),
//! or the listener's for weighted routes.
use envoy_types::pb::envoy::{
    config::listener::v3::{filter, Filter},
    extensions::filters::network::tcp_proxy::v3::{
        tcp_proxy::{weighted_cluster::ClusterWeight, ClusterSpecifier, WeightedCluster},
        TcpProxy,
    },
};

use super::{routes, GatewayServer};
use crate::{
    model::{
        routing::{Destination, VirtualService},
        Service,
    },
    translate::waypoint::{
        pb,
        route_action::{destination_cluster, Target},
        Cx,
    },
};

pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
pub const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// The VirtualServices bound to `s`'s Gateway, exported to `viewer`,
/// with a host the server admits, in file order.
pub fn bound_to<'a>(
    cx: &'a Cx<'_>,
    s: GatewayServer<'a>,
    viewer: &'a str,
) -> impl Iterator<Item = &'a VirtualService> + 'a {
    cx.state.virtual_services.iter().filter(move |vs| {
        routes::bound(vs, s.gateway)
            && vs.exported_to(viewer)
            && routes::server_hosts(s, &vs.namespace).iter().any(|h| {
                vs.hosts
                    .iter()
                    .any(|v| routes::shared_host(h, &cx.fqdn(v, &vs.namespace)).is_some())
            })
    })
}

/// The `tcp_proxy` filter of the first `tcp[]` route matching `s`'s port
/// (a route without `match`, or a match without `port`, matches every
/// port); `None` when no VirtualService has one.
pub fn tcp_route_filter(cx: &Cx<'_>, s: GatewayServer<'_>, viewer: &str) -> Option<Filter> {
    let port = s.server.port;
    bound_to(cx, s, viewer).find_map(|vs| {
        vs.tcp
            .iter()
            .find(|r| {
                r.match_ports.is_empty()
                    || r.match_ports.iter().any(|p| p.is_none_or(|p| p == port))
            })
            .map(|r| tcp_proxy(cx, &vs.namespace, &r.route, port))
    })
}

/// A `tcp_proxy` filter to `route` (destinations resolved in
/// `namespace`; one without a port takes its service's only port, else
/// the gateway's `port`). Destinations of weight 0 are left out.
pub fn tcp_proxy(
    cx: &Cx<'_>,
    namespace: &str,
    route: &[(Destination, Option<u32>)],
    port: u16,
) -> Filter {
    let no_service = Service::default();
    let target = Target {
        service: &no_service,
        port,
    };
    let single = route.len() == 1;
    let clusters: Vec<(String, u32)> = route
        .iter()
        .map(|(d, w)| {
            let (name, _) = destination_cluster(cx, namespace, d, target);
            (name, w.unwrap_or(if single { 100 } else { 0 }))
        })
        .filter(|(_, w)| single || *w > 0)
        .collect();
    let proxy = match clusters.as_slice() {
        [(name, _)] => TcpProxy {
            stat_prefix: name.clone(),
            cluster_specifier: Some(ClusterSpecifier::Cluster(name.clone())),
            ..Default::default()
        },
        _ => TcpProxy {
            stat_prefix: format!("0.0.0.0_{port}"),
            cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: clusters
                    .into_iter()
                    .map(|(name, weight)| ClusterWeight {
                        name,
                        weight,
                        ..Default::default()
                    })
                    .collect(),
            })),
            ..Default::default()
        },
    };
    Filter {
        name: TCP_PROXY.into(),
        config_type: Some(filter::ConfigType::TypedConfig(pb::any(
            TCP_PROXY_TYPE,
            &proxy,
        ))),
    }
}
