//! TLS PASSTHROUGH servers: one candidate chain per `tls[].match[]` of the
//! VirtualServices bound to the server, matched by SNI, relaying the
//! untouched stream with `tcp_proxy` to the route's destinations. The
//! SNI names are the match's `sniHosts` intersected with the server's
//! hosts (of each pair, the narrower when one admits the other, as Istio);
//! `*` left in the intersection matches any name (the default chain).
use envoy_types::pb::envoy::config::listener::v3::Filter;

use super::{routes, tcp, GatewayServer};
use crate::translate::waypoint::Cx;

/// One chain a PASSTHROUGH server asks for.
pub struct PassthroughChain {
    /// `<vs namespace>/<vs name>/tls[<i>]`.
    pub name: String,
    /// SNI names; empty: any.
    pub server_names: Vec<String>,
    pub filter: Filter,
}

/// The chains of PASSTHROUGH server `s`, in VirtualService and route order
/// (the caller orders them most specific first and drops repeated names:
/// the first route matching a name wins).
pub fn chains(cx: &Cx<'_>, s: GatewayServer<'_>, viewer: &str) -> Vec<PassthroughChain> {
    let port = s.server.port;
    let mut out = vec![];
    for vs in tcp::bound_to(cx, s, viewer) {
        let admitted = routes::server_hosts(s, &vs.namespace);
        for (i, route) in vs.tls.iter().enumerate() {
            let mut names: Vec<String> = vec![];
            for m in &route.matches {
                if m.port.is_some_and(|p| p != port)
                    || !(m.gateways.is_empty()
                        || m.gateways
                            .iter()
                            .any(|g| s.gateway.named_by(g, &vs.namespace)))
                {
                    continue;
                }
                for sni in &m.sni_hosts {
                    for h in &admitted {
                        if let Some(n) = routes::shared_host(h, sni) {
                            if !names.contains(&n) {
                                names.push(n);
                            }
                        }
                    }
                }
            }
            if names.is_empty() {
                continue;
            }
            let server_names = if names.iter().any(|n| n == "*") {
                vec![]
            } else {
                names
            };
            out.push(PassthroughChain {
                name: format!("{}/{}/tls[{i}]", vs.namespace, vs.name),
                server_names,
                filter: tcp::tcp_proxy(cx, &vs.namespace, &route.route, port),
            });
        }
    }
    out
}
