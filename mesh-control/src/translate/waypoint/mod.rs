//! `MeshState` → the Envoy resources a waypoint (mesh-waypoint or a stock
//! Envoy) runs on, as docs/contracts/waypoint-xds.md defines them:
//!
//! - [`listener`]: one Listener per waypoint, `waypoint/<ns>/<name>`,
//!   HTTP connection manager with fault, RBAC and router filters.
//! - [`routes`]: one RouteConfiguration per waypoint (same name): a
//!   VirtualHost per (service, port) bound to it, routes from the
//!   VirtualServices bound to `mesh` ([`route_match`], [`route_action`],
//!   [`fault`]).
//! - [`clusters`]: Istio-named clusters per service port and DR subset,
//!   with the DestinationRule's traffic policy ([`policy`]).
//! - [`endpoints`]: a ClusterLoadAssignment per cluster.
//! - [`rbac`]: L7 AuthorizationPolicies targeting a waypoint or a service
//!   bound to one.
//!
//! Listeners and routes are per waypoint; clusters and endpoints are
//! global (every service, so routes may send anywhere).
pub mod clusters;
pub mod endpoints;
pub mod fault;
pub mod listener;
pub(crate) mod pb;
pub mod policy;
pub mod rbac;
pub mod route_action;
pub mod route_match;
pub mod routes;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
    route::v3::RouteConfiguration,
};

use crate::model::{MeshState, Service};

/// Port of the plain-HTTP listener (what a stock Envoy binds).
pub const WAYPOINT_HTTP_PORT: u32 = 15080;

/// Every Envoy resource of the mesh's waypoints, by resource name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    pub listeners: BTreeMap<String, Listener>,
    pub routes: BTreeMap<String, RouteConfiguration>,
    pub clusters: BTreeMap<String, Cluster>,
    pub endpoints: BTreeMap<String, ClusterLoadAssignment>,
    /// Ingress gateway pods (`<pod name>.<namespace>`) and their listeners
    /// and routes ([`crate::translate::gateway`]); they use `clusters`.
    pub gateways: BTreeMap<String, crate::translate::gateway::GatewayPod>,
}

/// Translates `state`; `root_namespace` is Istio's (policies there may
/// target every waypoint through the `istio-waypoint` GatewayClass).
/// Pure; called once per state change.
pub fn translate(state: &MeshState, root_namespace: &str) -> Translation {
    let cx = Cx::new(state).with_root_namespace(root_namespace);
    let mut out = Translation::default();
    let rbac = rbac::translate(&cx, root_namespace);
    for waypoint in state.waypoints.values() {
        let r = waypoint.reference();
        let name = r.resource_name();
        let filters = rbac.filters(&r);
        out.listeners
            .insert(name.clone(), listener::listener(&name, &filters));
        out.routes
            .insert(name.clone(), routes::route_configuration(&cx, &r, &rbac));
    }
    for c in clusters::clusters(&cx) {
        out.clusters.insert(c.name.clone(), c);
    }
    for cla in endpoints::endpoints(&cx) {
        out.endpoints.insert(cla.cluster_name.clone(), cla);
    }
    out.gateways = crate::translate::gateway::translate(&cx);
    out
}

/// What every part of the translation looks up.
pub struct Cx<'s> {
    pub state: &'s MeshState,
    /// Istio's root namespace (DestinationRule lookup,
    /// [`policy::destination_rule_seen_from`]); empty unless set.
    pub root_namespace: &'s str,
    /// Service hostname (FQDN) → service.
    by_host: BTreeMap<&'s str, &'s Service>,
}

impl<'s> Cx<'s> {
    pub fn new(state: &'s MeshState) -> Self {
        let by_host = state
            .services
            .values()
            .map(|s| (s.hostname.as_str(), s))
            .collect();
        Cx {
            state,
            root_namespace: "",
            by_host,
        }
    }

    /// The same, with Istio's root namespace.
    pub fn with_root_namespace(self, root_namespace: &'s str) -> Self {
        Cx {
            root_namespace,
            ..self
        }
    }

    /// `reviews` in `shop` → `reviews.shop.svc.<cluster domain>`; a name
    /// with a dot is taken as written (Istio's short-name rule).
    pub fn fqdn(&self, host: &str, namespace: &str) -> String {
        if host.contains('.') || host.contains('*') {
            host.to_string()
        } else {
            format!("{host}.{namespace}.svc.{}", self.state.cluster_domain())
        }
    }

    /// The service `host` (as written in `namespace`) names.
    pub fn service(&self, host: &str, namespace: &str) -> Option<&'s Service> {
        self.by_host
            .get(self.fqdn(host, namespace).as_str())
            .copied()
    }

    /// Every service, in key order.
    pub fn services(&self) -> impl Iterator<Item = &'s Service> {
        self.state.services.values()
    }
}

/// Istio's cluster name: `outbound|<port>|<subset>|<fqdn>`.
pub fn cluster_name(port: u16, subset: Option<&str>, fqdn: &str) -> String {
    format!("outbound|{port}|{}|{fqdn}", subset.unwrap_or(""))
}

/// The seed fixtures; also used by the admin dump's tests.
#[cfg(test)]
pub(crate) mod tests;
