//! An ingress gateway's RouteConfigurations: `http.<port>` (every plain
//! HTTP server on the port) and `https.<port>.<port name>.<gateway>.<ns>`
//! (one HTTPS server). One VirtualHost per host of the VirtualServices
//! bound to the server's Gateway (`gateways: [G]` in the Gateway's
//! namespace, or `[N/G]`) that the server's hosts admit, named
//! `<host>:<port>` with domains `<host>` and `<host>:*` (see
//! [`domains`]); a
//! VirtualService host `*` (or a wider wildcard) takes the server's
//! hosts. Routes are translated as for waypoints, destinations resolved
//! in the VirtualService's namespace; a match naming other gateways, or
//! another port, is left out. A server with `tls.httpsRedirect` makes its
//! VirtualHosts `require_tls: ALL`. A host no VirtualService binds gets
//! no VirtualHost (404).
use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::route::v3::{
    virtual_host::TlsRequirementType, Route, RouteConfiguration, VirtualHost,
};

use super::GatewayServer;
use crate::{
    model::{
        routing::{HttpMatch, VirtualService},
        IngressGateway, Service,
    },
    translate::waypoint::{route_action::Target, routes::http_routes, Cx},
};

/// `http.<port>`.
pub fn http_name(port: u16) -> String {
    format!("http.{port}")
}

/// `https.<port>.<port name>.<gateway>.<namespace>`.
pub fn https_name(s: GatewayServer<'_>) -> String {
    format!(
        "https.{}.{}.{}.{}",
        s.server.port, s.server.port_name, s.gateway.name, s.gateway.namespace
    )
}

/// True when `pattern` (`*`, `*.example.com`, exact) admits `host`
/// (itself possibly a wildcard no wider than the pattern).
pub fn admits(pattern: &str, host: &str) -> bool {
    pattern == "*"
        || pattern == host
        || pattern
            .strip_prefix('*')
            .is_some_and(|suffix| host.ends_with(suffix) && host != suffix)
}

/// A gateway VirtualHost's domains, as istiod writes them: the host and
/// the host with any port (`<host>:*`), since a client puts the port it
/// dialed into `Host` whenever that port is not the scheme's default —
/// through a port-forward, a NodePort or a load balancer's own port, the
/// gateway's server port is not the port the client saw. `*` alone
/// already matches every host, with or without a port.
pub fn domains(host: &str) -> Vec<String> {
    if host == "*" {
        return vec![host.to_string()];
    }
    vec![host.to_string(), format!("{host}:*")]
}

/// The VirtualHost host a server host and a VirtualService host share:
/// the narrower of the two, if one admits the other.
pub fn shared_host(server_host: &str, vs_host: &str) -> Option<String> {
    if admits(server_host, vs_host) {
        Some(vs_host.to_string())
    } else if admits(vs_host, server_host) {
        Some(server_host.to_string())
    } else {
        None
    }
}

/// True when `vs` is bound to `gateway`.
pub fn bound(vs: &VirtualService, gateway: &IngressGateway) -> bool {
    !vs.hosts.is_empty()
        && vs
            .gateways
            .iter()
            .any(|g| gateway.named_by(g, &vs.namespace))
}

/// The hosts (without namespace) of `server` that VirtualServices of
/// `namespace` may bind to (`*/h`, `./h` in the Gateway's namespace,
/// `ns/h`, or `h`).
pub fn server_hosts<'a>(s: GatewayServer<'a>, namespace: &str) -> Vec<&'a str> {
    s.server
        .hosts
        .iter()
        .filter_map(|h| match h.split_once('/') {
            None => Some(h.as_str()),
            Some(("*", host)) => Some(host),
            Some((".", host)) => (namespace == s.gateway.namespace).then_some(host),
            Some((ns, host)) => (ns == namespace).then_some(host),
        })
        .collect()
}

/// The RouteConfiguration `name` for `servers` (all on one port), as a
/// gateway pod in namespace `viewer` applies it: only VirtualServices
/// exported to `viewer` count (`exportTo`, as istiod).
pub fn route_configuration(
    cx: &Cx<'_>,
    name: &str,
    servers: &[GatewayServer<'_>],
    viewer: &str,
) -> RouteConfiguration {
    let mut virtual_hosts: Vec<VirtualHost> = vec![];
    // (virtual host, VirtualService index) already translated.
    let mut done = BTreeSet::new();
    for s in servers {
        let port = s.server.port;
        let redirect = s.server.tls.as_ref().is_some_and(|t| t.https_redirect);
        for (i, vs) in cx.state.virtual_services.iter().enumerate() {
            if !bound(vs, s.gateway) || !vs.exported_to(viewer) {
                continue;
            }
            let admitted = server_hosts(*s, &vs.namespace);
            for vs_host in &vs.hosts {
                let vs_host = cx.fqdn(vs_host, &vs.namespace);
                for server_host in &admitted {
                    let Some(host) = shared_host(server_host, &vs_host) else {
                        continue;
                    };
                    let vh_name = format!("{host}:{port}");
                    let at = match virtual_hosts.iter().position(|v| v.name == vh_name) {
                        Some(at) => at,
                        None => {
                            virtual_hosts.push(VirtualHost {
                                name: vh_name.clone(),
                                domains: domains(&host),
                                ..Default::default()
                            });
                            virtual_hosts.len() - 1
                        }
                    };
                    let vh = &mut virtual_hosts[at];
                    if redirect {
                        vh.require_tls = TlsRequirementType::All as i32;
                    }
                    if done.insert((vh_name, i)) {
                        vh.routes.extend(routes(cx, vs, *s));
                    }
                }
            }
        }
    }
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts,
        ..Default::default()
    }
}

fn match_applies(m: &HttpMatch, s: GatewayServer<'_>, namespace: &str) -> bool {
    (m.gateways.is_empty() || m.gateways.iter().any(|g| s.gateway.named_by(g, namespace)))
        && m.port.is_none_or(|p| p == s.server.port)
}

/// The routes `vs` gives on server `s`: one per `http[]` entry and match,
/// named `<vs ns>/<vs name>/<http name or index>`, as on a waypoint. A
/// destination without a port takes its service's only port.
fn routes(cx: &Cx<'_>, vs: &VirtualService, s: GatewayServer<'_>) -> Vec<Route> {
    // No service is the virtual host's own: the port is the gateway's.
    let no_service = Service::default();
    let target = Target {
        service: &no_service,
        port: s.server.port,
    };
    let mut out = vec![];
    for (i, http) in vs.http.iter().enumerate() {
        match http_routes(cx, vs, i, http, target, |m| {
            match_applies(m, s, &vs.namespace)
        }) {
            Ok(built) => out.extend(built),
            Err(why) => tracing::debug!(
                virtual_service = %vs.resource(),
                "spec.http[{i}].{why}; route skipped on the gateway"
            ),
        }
    }
    out
}
