//! A waypoint's RouteConfiguration (named like its listener): one
//! VirtualHost per (service, port) of the services bound to it, named
//! `<fqdn>:<port>`, with every name clients use for it as domains (the
//! port-less forms on the service's lowest port only: Envoy refuses a
//! domain twice in one configuration, so a later duplicate is dropped).
//!
//! Routes come from the VirtualServices bound to `mesh` (no `gateways`,
//! or `gateways` naming `mesh`) whose hosts name the service (`*` names
//! all) and that are exported to the waypoint's namespace (`exportTo`:
//! routes run at the waypoint, a proxy of that namespace, whichever
//! namespace the client is in), in file order: each `http[]` entry
//! becomes one route per `match[]` entry (one catch-all when it has
//! none), named `<vs ns>/<vs name>/<http name or index>`. A service no
//! VirtualService names gets one route `/` to its default cluster.
//! Nothing matched: Envoy's 404.
use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::route::v3::{
    route::Action, route_action::ClusterSpecifier, Route, RouteAction, RouteConfiguration,
    VirtualHost,
};

use super::{cluster_name, pb, rbac::Rbac, route_action, route_action::Target, route_match, Cx};
use crate::model::{
    routing::{HttpMatch, HttpRoute},
    Service, VirtualService, WaypointRef,
};

/// The RouteConfiguration of waypoint `wp`.
pub fn route_configuration(cx: &Cx<'_>, wp: &WaypointRef, rbac: &Rbac) -> RouteConfiguration {
    let mut seen = BTreeSet::new();
    let mut virtual_hosts = vec![];
    for svc in bound_services(cx, wp) {
        let lowest = svc.ports.keys().next().copied();
        for port in svc.ports.keys() {
            let target = Target {
                service: svc,
                port: *port,
            };
            let mut vh = VirtualHost {
                name: format!("{}:{port}", svc.hostname),
                domains: domains(svc, *port, lowest == Some(*port))
                    .into_iter()
                    .filter(|d| {
                        let fresh = seen.insert(d.clone());
                        if !fresh {
                            tracing::debug!(waypoint = %wp, domain = %d, "domain already used by another virtual host; dropped");
                        }
                        fresh
                    })
                    .collect(),
                routes: routes(cx, target, &wp.namespace),
                ..Default::default()
            };
            vh.typed_per_filter_config = rbac.per_host(svc);
            virtual_hosts.push(vh);
        }
    }
    RouteConfiguration {
        name: wp.resource_name(),
        virtual_hosts,
        ..Default::default()
    }
}

/// The services attached to `wp`, in key order.
pub fn bound_services<'s>(cx: &Cx<'s>, wp: &WaypointRef) -> Vec<&'s Service> {
    cx.services()
        .filter(|s| s.waypoint.as_ref() == Some(wp))
        .collect()
}

/// `<fqdn>:<port>`, `<name>:<port>`, `<name>.<ns>:<port>`,
/// `<name>.<ns>.svc:<port>`, `<vip>:<port>`; `with_bare` adds each
/// without the port.
pub fn domains(svc: &Service, port: u16, with_bare: bool) -> Vec<String> {
    let mut hosts = vec![
        svc.hostname.clone(),
        svc.name.clone(),
        format!("{}.{}", svc.name, svc.namespace),
        format!("{}.{}.svc", svc.name, svc.namespace),
    ];
    hosts.extend(svc.vips.iter().map(|ip| match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }));
    let mut out: Vec<String> = hosts.iter().map(|h| format!("{h}:{port}")).collect();
    if with_bare {
        out.extend(hosts);
    }
    out
}

/// True when `vs` applies to in-mesh traffic.
pub fn mesh_bound(vs: &VirtualService) -> bool {
    vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")
}

/// True when one of `vs`'s hosts names `svc`.
pub fn names_service(cx: &Cx<'_>, vs: &VirtualService, svc: &Service) -> bool {
    vs.hosts.iter().any(|h| {
        h == "*"
            || cx.fqdn(h, &vs.namespace) == svc.hostname
            || h.strip_prefix('*')
                .is_some_and(|suffix| svc.hostname.ends_with(suffix))
    })
}

/// The VirtualServices that route `svc` on a waypoint in namespace
/// `viewer` (those exported to it), in file order.
pub fn virtual_services<'s>(cx: &Cx<'s>, svc: &Service, viewer: &str) -> Vec<&'s VirtualService> {
    cx.state
        .virtual_services
        .iter()
        .filter(|vs| mesh_bound(vs) && names_service(cx, vs, svc) && vs.exported_to(viewer))
        .collect()
}

fn match_applies(m: &HttpMatch, port: u16) -> bool {
    (m.gateways.is_empty() || m.gateways.iter().any(|g| g == "mesh"))
        && m.port.is_none_or(|p| p == port)
}

/// The routes of one virtual host on a waypoint in namespace `viewer`.
pub fn routes(cx: &Cx<'_>, target: Target<'_>, viewer: &str) -> Vec<Route> {
    let vss = virtual_services(cx, target.service, viewer);
    if vss.is_empty() {
        return vec![default_route(target)];
    }
    let mut out = vec![];
    for vs in vss {
        for (i, http) in vs.http.iter().enumerate() {
            match http_routes(cx, vs, i, http, target, |m| match_applies(m, target.port)) {
                Ok(built) => out.extend(built),
                // Reported once per load by the analyzer ([`problems`]).
                Err(why) => tracing::debug!(
                    virtual_service = %vs.resource(),
                    "spec.http[{i}].{why}; route skipped on the waypoint"
                ),
            }
        }
    }
    out
}

/// The Envoy routes of `http`, entry `i` of `vs`: one per match `keep`
/// admits (a catch-all when it has none), named `<vs ns>/<vs name>/<http
/// name or index>`, sending to `target`'s clusters. `Err` says why the
/// entry cannot be translated; it is then skipped whole. Waypoints and
/// ingress gateways build their routes with it.
pub(crate) fn http_routes(
    cx: &Cx<'_>,
    vs: &VirtualService,
    i: usize,
    http: &HttpRoute,
    target: Target<'_>,
    keep: impl Fn(&HttpMatch) -> bool,
) -> Result<Vec<Route>, String> {
    let name = format!(
        "{}/{}/{}",
        vs.namespace,
        vs.name,
        http.name.clone().unwrap_or_else(|| i.to_string())
    );
    let matches: Vec<Option<&HttpMatch>> = if http.matches.is_empty() {
        vec![None]
    } else {
        http.matches.iter().filter(|m| keep(m)).map(Some).collect()
    };
    let mut built = vec![];
    for m in matches {
        let mut route = Route {
            name: name.clone(),
            r#match: Some(route_match::route_match(m)),
            ..Default::default()
        };
        if let Some(ips) = m.and_then(|m| route_match::source_ips(cx, m)) {
            route.metadata = Some(route_match::source_metadata(&ips));
        }
        route_action::apply(cx, vs, http, target, &mut route)?;
        built.push(route);
    }
    Ok(built)
}

/// `/` → the service port's default cluster, Istio's default retries.
pub fn default_route(target: Target<'_>) -> Route {
    Route {
        name: "default".into(),
        r#match: Some(route_match::route_match(None)),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster_name(
                target.port,
                None,
                &target.service.hostname,
            ))),
            timeout: Some(pb::duration(std::time::Duration::ZERO)),
            retry_policy: route_action::retry_policy(None),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// What the waypoint translation skips: `(VirtualService, field, why)` for
/// every `http[]` entry of a mesh-bound VirtualService Envoy cannot
/// express (delegation, `http2Error` faults, …), checked against the
/// first service it names.
pub fn problems<'s>(cx: &Cx<'s>) -> Vec<(&'s VirtualService, String, String)> {
    let mut out = vec![];
    for vs in cx.state.virtual_services.iter().filter(|vs| mesh_bound(vs)) {
        let Some(service) = cx.services().find(|s| names_service(cx, vs, s)) else {
            continue;
        };
        let Some(port) = service.ports.keys().next().copied() else {
            continue;
        };
        for (i, http) in vs.http.iter().enumerate() {
            let mut scratch = Route::default();
            let target = Target { service, port };
            if let Err(why) = route_action::apply(cx, vs, http, target, &mut scratch) {
                let (field, message) = why.split_once(": ").unwrap_or(("", why.as_str()));
                out.push((vs, format!("spec.http[{i}].{field}"), message.to_string()));
            }
        }
    }
    out
}
