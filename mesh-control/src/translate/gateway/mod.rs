//! `MeshState` → the Envoy resources an ingress gateway
//! (`mesh-waypoint --role gateway`, or a stock Envoy) runs on, as
//! docs/contracts/gateway-xds.md defines them:
//!
//! - [`listeners`]: one Listener `0.0.0.0_<port>` per port of the
//!   Gateways selecting a pod: a plain HTTP filter chain, a TCP chain
//!   ([`tcp`]: `tcp_proxy` to the first matching `tcp[]` route), or TLS
//!   chains by SNI (most specific first): one per HTTPS server, per TLS
//!   server terminated without HTTP, per `tls[]` route of a PASSTHROUGH
//!   server ([`passthrough`]); every HTTP
//!   chain's HTTP filters are fault → RBAC ([`authz`]: the
//!   AuthorizationPolicies selecting the pod, DENY before ALLOW, AUDIT
//!   last) → router.
//! - [`routes`]: RouteConfigurations `http.<port>` and
//!   `https.<port>.<port name>.<gateway>.<namespace>`: a VirtualHost per
//!   host of the VirtualServices bound to the Gateway, routes translated
//!   as the waypoint's ([`super::waypoint::route_match`],
//!   [`super::waypoint::route_action`]).
//!
//! Listeners and routes are per gateway pod (the Gateways selecting it,
//! merged by port, and the policies applying to it); clusters and endpoints are the waypoints' global ones.
pub mod authz;
pub mod listeners;
pub mod passthrough;
pub mod routes;
pub mod tcp;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::{
    config::{listener::v3::Listener, route::v3::RouteConfiguration},
    extensions::filters::network::http_connection_manager::v3::HttpFilter,
};

use super::waypoint::Cx;
use crate::model::{
    ingress::{IngressGateway, Server, ServerMode},
    Workload,
};

/// The listeners and routes one ingress gateway pod receives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayPod {
    pub namespace: String,
    /// The pod's service account: with authentication, only a stream with
    /// its token gets these.
    pub service_account: String,
    /// `<namespace>/<name>` of the Gateways selecting the pod, in file order.
    pub gateways: Vec<String>,
    pub listeners: BTreeMap<String, Listener>,
    pub routes: BTreeMap<String, RouteConfiguration>,
}

/// A server with the Gateway it belongs to.
#[derive(Clone, Copy)]
pub struct GatewayServer<'s> {
    pub gateway: &'s IngressGateway,
    pub server: &'s Server,
}

/// Every ingress gateway pod by `<pod name>.<namespace>` (how a `router~`
/// node id names it). Pods of one namespace selected by the same Gateways
/// and the same AuthorizationPolicies share one translation (what a pod
/// sees depends on its namespace: VirtualServices apply where they are
/// exported, `exportTo`).
pub fn translate(cx: &Cx<'_>) -> BTreeMap<String, GatewayPod> {
    type Key = (String, Vec<usize>, Vec<usize>);
    let mut built: BTreeMap<Key, (BTreeMap<_, _>, BTreeMap<_, _>)> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for w in cx.state.workloads.values() {
        let selecting = selecting(cx, w);
        if selecting.is_empty() {
            continue;
        }
        let policies = authz::applying(cx, w);
        let (listeners, routes) = built
            .entry((w.namespace.clone(), selecting.clone(), policies))
            .or_insert_with_key(|(_, _, policies)| {
                let gateways: Vec<&IngressGateway> = selecting
                    .iter()
                    .map(|i| &cx.state.ingress_gateways[*i])
                    .collect();
                resources(cx, &gateways, &w.namespace, &authz::filters(cx, policies))
            })
            .clone();
        out.insert(
            format!("{}.{}", w.name, w.namespace),
            GatewayPod {
                namespace: w.namespace.clone(),
                service_account: w.service_account.clone(),
                gateways: selecting
                    .iter()
                    .map(|i| cx.state.ingress_gateways[*i].key())
                    .collect(),
                listeners,
                routes,
            },
        );
    }
    out
}

/// Indices (in [`crate::model::MeshState::ingress_gateways`]) of the
/// Gateways selecting `w`.
fn selecting(cx: &Cx<'_>, w: &Workload) -> Vec<usize> {
    cx.state
        .ingress_gateways
        .iter()
        .enumerate()
        .filter(|(_, g)| g.selects_workload(w))
        .map(|(i, _)| i)
        .collect()
}

type Resources = (
    BTreeMap<String, Listener>,
    BTreeMap<String, RouteConfiguration>,
);

/// The listeners and routes of `gateways` together, for a gateway pod in
/// namespace `viewer`: their supported servers grouped by port, every
/// HTTP chain with `rbac_filters`. A port's first server decides its
/// [`PortKind`](crate::model::ingress::PortKind) (plain HTTP, TCP, or TLS by SNI); a server of another
/// kind on it is dropped.
pub fn resources(
    cx: &Cx<'_>,
    gateways: &[&IngressGateway],
    viewer: &str,
    rbac_filters: &[HttpFilter],
) -> Resources {
    let mut by_port: BTreeMap<u16, Vec<GatewayServer<'_>>> = BTreeMap::new();
    for gateway in gateways {
        for server in &gateway.servers {
            let kind = match server.mode() {
                Ok(mode) => mode.port_kind(),
                Err(why) => {
                    tracing::debug!(gateway = %gateway.key(), port = server.port, "{why}; server skipped");
                    continue;
                }
            };
            let on_port = by_port.entry(server.port).or_default();
            if let Some(first) = on_port.first() {
                if first.server.mode().map(ServerMode::port_kind) != Ok(kind) {
                    tracing::warn!(gateway = %gateway.key(), port = server.port, "a port serves one kind (plain HTTP, TCP or TLS): this server is dropped");
                    continue;
                }
            }
            on_port.push(GatewayServer { gateway, server });
        }
    }
    let mut listeners = BTreeMap::new();
    let mut route_configs = BTreeMap::new();
    for (port, servers) in by_port {
        if let Some(listener) = listeners::listener(cx, port, &servers, viewer, rbac_filters) {
            listeners.insert(listener.name.clone(), listener);
        }
        if servers[0].server.protocol.is_plain_http() {
            let name = routes::http_name(port);
            route_configs.insert(
                name.clone(),
                routes::route_configuration(cx, &name, &servers, viewer),
            );
        } else {
            for s in servers
                .iter()
                .filter(|s| s.server.mode() == Ok(ServerMode::HttpsTerminate))
            {
                let name = routes::https_name(*s);
                route_configs.insert(
                    name.clone(),
                    routes::route_configuration(cx, &name, &[*s], viewer),
                );
            }
        }
    }
    (listeners, route_configs)
}

#[cfg(test)]
mod tests;
