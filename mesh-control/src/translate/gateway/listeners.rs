//! An ingress gateway's Listener `0.0.0.0_<port>`: for plain HTTP one
//! filter chain without a match (routes `http.<port>`); for TCP one chain
//! without a match whose `tcp_proxy` goes to the first matching `tcp[]`
//! route ([`tcp`]); for TLS ports chains matched by SNI: per HTTPS
//! server (terminated, HTTP routes), per TLS server terminated without
//! HTTP (`tcp_proxy`), per `tls[]` route of a PASSTHROUGH server
//! ([`passthrough`], no transport socket: bytes untouched). An HTTPS
//! server's chain is matched by SNI (the server's hosts without
//! their `namespace/`; `*` matches any name: the default chain), with a
//! `DownstreamTlsContext` (files or `kubernetes://<credentialName>`,
//! client certificates for MUTUAL, ALPN h2 and http/1.1, TLS 1.2 at
//! least). Chains are ordered exact names first, then wildcards, then the
//! default; a name (or the default) a previous chain already has is left
//! out, since Envoy refuses two chains with the same match. Every chain's
//! HTTP connection manager has the pod's RBAC filters between fault and
//! router, as a waypoint's has.
use std::collections::BTreeSet;

use envoy_types::pb::envoy::{
    config::{
        core::v3::{
            address, data_source, socket_address, transport_socket, Address, DataSource,
            SocketAddress, TransportSocket,
        },
        listener::v3::{listener_filter, FilterChain, FilterChainMatch, Listener, ListenerFilter},
    },
    extensions::{
        filters::{
            listener::tls_inspector::v3::TlsInspector,
            network::http_connection_manager::v3::HttpFilter,
        },
        transport_sockets::tls::v3::{
            common_tls_context::ValidationContextType, tls_parameters::TlsProtocol,
            CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
            TlsCertificate, TlsParameters,
        },
    },
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::{passthrough, routes, tcp, GatewayServer};
use crate::{
    model::ingress::{PortKind, ServerMode, ServerTls, TlsMode},
    translate::waypoint::{listener::http_connection_manager, pb, Cx},
};

pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub const DOWNSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const TLS_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";
/// Prefix of the secret names a `credentialName` gives (Istio's).
pub const CREDENTIAL_PREFIX: &str = "kubernetes://";

/// `0.0.0.0_<port>`.
pub fn listener_name(port: u16) -> String {
    format!("0.0.0.0_{port}")
}

/// The Listener of `port` for `servers` (all of the first one's
/// [`PortKind`]), `rbac_filters` on every HTTP chain, for a gateway pod
/// in namespace `viewer`. `None` when no server leaves a chain (a TCP or
/// PASSTHROUGH server no VirtualService routes).
pub fn listener(
    cx: &Cx<'_>,
    port: u16,
    servers: &[GatewayServer<'_>],
    viewer: &str,
    rbac_filters: &[HttpFilter],
) -> Option<Listener> {
    let name = listener_name(port);
    let kind = servers.first()?.server.mode().ok()?.port_kind();
    let (filter_chains, listener_filters) = match kind {
        PortKind::PlainHttp => {
            let chain = FilterChain {
                filters: vec![http_connection_manager(
                    &name,
                    &routes::http_name(port),
                    rbac_filters,
                )],
                ..Default::default()
            };
            (vec![chain], vec![])
        }
        PortKind::Tcp => {
            let Some(filter) = servers
                .iter()
                .find_map(|s| tcp::tcp_route_filter(cx, *s, viewer))
            else {
                tracing::debug!(
                    port,
                    "no tcp route of a bound VirtualService matches the TCP server: no listener"
                );
                return None;
            };
            let chain = FilterChain {
                filters: vec![filter],
                ..Default::default()
            };
            (vec![chain], vec![])
        }
        PortKind::Sni => {
            let inspector = ListenerFilter {
                name: TLS_INSPECTOR.into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(pb::any(
                    TLS_INSPECTOR_TYPE,
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            };
            let chains = sni_chains(cx, &name, servers, viewer, rbac_filters);
            if chains.is_empty() {
                tracing::debug!(
                    port,
                    "no TLS server on the port leaves a filter chain: no listener"
                );
                return None;
            }
            (chains, vec![inspector])
        }
    };
    Some(Listener {
        name,
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "0.0.0.0".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
                ..Default::default()
            })),
        }),
        filter_chains,
        listener_filters,
        ..Default::default()
    })
}

/// The SNI names of a server: its hosts without `namespace/`; empty (no
/// SNI match) when one of them is `*`.
pub fn server_names(hosts: &[String]) -> Vec<String> {
    let names: Vec<String> = hosts
        .iter()
        .map(|h| h.split_once('/').map_or(h.as_str(), |(_, h)| h).to_string())
        .collect();
    if names.iter().any(|n| n == "*") {
        vec![]
    } else {
        names
    }
}

/// One SNI-matched chain before ordering: its names (empty: any) and the
/// chain without its match.
struct Candidate {
    names: Vec<String>,
    chain: FilterChain,
    /// For the warnings: the Gateway and the chain's name.
    gateway: String,
}

fn sni_chains(
    cx: &Cx<'_>,
    stat_prefix: &str,
    servers: &[GatewayServer<'_>],
    viewer: &str,
    rbac_filters: &[HttpFilter],
) -> Vec<FilterChain> {
    let mut candidates = vec![];
    for s in servers {
        let gateway = s.gateway.key();
        let no_tls = ServerTls {
            mode: None,
            https_redirect: false,
            server_certificate: None,
            private_key: None,
            ca_certificates: None,
            credential_name: None,
        };
        let tls = s.server.tls.as_ref().unwrap_or(&no_tls);
        match s.server.mode() {
            Ok(ServerMode::HttpsTerminate) => {
                let route_config = routes::https_name(*s);
                candidates.push(Candidate {
                    names: server_names(&s.server.hosts),
                    chain: FilterChain {
                        name: route_config.clone(),
                        filters: vec![http_connection_manager(
                            stat_prefix,
                            &route_config,
                            rbac_filters,
                        )],
                        transport_socket: Some(tls_socket(&downstream_tls(tls, true))),
                        ..Default::default()
                    },
                    gateway,
                });
            }
            Ok(ServerMode::TlsTerminate) => {
                let Some(filter) = tcp::tcp_route_filter(cx, *s, viewer) else {
                    tracing::debug!(%gateway, port = s.server.port, "no tcp route for the terminated TLS server: no chain");
                    continue;
                };
                candidates.push(Candidate {
                    names: server_names(&s.server.hosts),
                    chain: FilterChain {
                        name: format!(
                            "tls.{}.{}.{}.{}",
                            s.server.port, s.server.port_name, s.gateway.name, s.gateway.namespace
                        ),
                        filters: vec![filter],
                        transport_socket: Some(tls_socket(&downstream_tls(tls, false))),
                        ..Default::default()
                    },
                    gateway,
                });
            }
            Ok(ServerMode::Passthrough) => {
                for c in passthrough::chains(cx, *s, viewer) {
                    candidates.push(Candidate {
                        names: c.server_names,
                        chain: FilterChain {
                            name: c.name,
                            filters: vec![c.filter],
                            ..Default::default()
                        },
                        gateway: gateway.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    order_chains(candidates)
}

/// Most specific first (exact names, wildcards, then the chain without
/// names; stable within a rank); a name an earlier chain has is left out
/// of a later one, a chain left with none is dropped, and at most one
/// chain has no names (Envoy refuses two chains with the same match).
fn order_chains(mut candidates: Vec<Candidate>) -> Vec<FilterChain> {
    let rank = |names: &[String]| match () {
        _ if names.is_empty() => 2,
        _ if names.iter().any(|n| n.contains('*')) => 1,
        _ => 0,
    };
    candidates.sort_by_key(|c| rank(&c.names));
    let mut seen = BTreeSet::new();
    let mut default_taken = false;
    let mut out = vec![];
    for Candidate {
        names,
        mut chain,
        gateway,
    } in candidates
    {
        let fresh: Vec<String> = names
            .iter()
            .filter(|n| seen.insert((*n).clone()))
            .cloned()
            .collect();
        if names.is_empty() {
            if std::mem::replace(&mut default_taken, true) {
                tracing::warn!(%gateway, chain = %chain.name, "a second chain without SNI names on the port: dropped");
                continue;
            }
        } else if fresh.is_empty() {
            tracing::warn!(%gateway, chain = %chain.name, "every SNI name of this chain is another's on the port: dropped");
            continue;
        }
        chain.filter_chain_match = (!fresh.is_empty()).then(|| FilterChainMatch {
            server_names: fresh,
            ..Default::default()
        });
        out.push(chain);
    }
    out
}

fn tls_socket(ctx: &DownstreamTlsContext) -> TransportSocket {
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pb::any(
            DOWNSTREAM_TLS_TYPE,
            ctx,
        ))),
    }
}

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    })
}

/// The server's TLS settings as Envoy's `DownstreamTlsContext` (ALPN h2
/// and http/1.1 when `http`, none for TCP); a `credentialName` wins over
/// file paths, for the CA too (as in Istio).
pub fn downstream_tls(tls: &ServerTls, http: bool) -> DownstreamTlsContext {
    let mut common = CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
            ..Default::default()
        }),
        alpn_protocols: if http {
            vec!["h2".into(), "http/1.1".into()]
        } else {
            vec![]
        },
        ..Default::default()
    };
    match &tls.credential_name {
        Some(c) => {
            common.tls_certificate_sds_secret_configs = vec![SdsSecretConfig {
                name: format!("{CREDENTIAL_PREFIX}{c}"),
                sds_config: None,
            }]
        }
        None => {
            common.tls_certificates = vec![TlsCertificate {
                certificate_chain: tls.server_certificate.as_deref().and_then(file),
                private_key: tls.private_key.as_deref().and_then(file),
                ..Default::default()
            }]
        }
    }
    let mutual = tls.mode == Some(TlsMode::Mutual);
    if mutual {
        common.validation_context_type = match (&tls.credential_name, &tls.ca_certificates) {
            (Some(c), _) => Some(ValidationContextType::ValidationContextSdsSecretConfig(
                SdsSecretConfig {
                    name: format!("{CREDENTIAL_PREFIX}{c}-cacert"),
                    sds_config: None,
                },
            )),
            (None, Some(ca)) => Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: file(ca),
                    ..Default::default()
                },
            )),
            (None, None) => None,
        };
    }
    DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: mutual.then_some(BoolValue { value: true }),
        ..Default::default()
    }
}
