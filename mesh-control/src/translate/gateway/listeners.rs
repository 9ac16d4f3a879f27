//! An ingress gateway's Listener `0.0.0.0_<port>`: for plain HTTP one
//! filter chain without a match (routes `http.<port>`); for HTTPS one
//! filter chain per server, matched by SNI (the server's hosts without
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

use super::{routes, GatewayServer};
use crate::{
    model::ingress::{ServerTls, TlsMode},
    translate::waypoint::{listener::http_connection_manager, pb},
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

/// The Listener of `port` for `servers` (all plain HTTP, or all HTTPS),
/// `rbac_filters` on every chain.
pub fn listener(port: u16, servers: &[GatewayServer<'_>], rbac_filters: &[HttpFilter]) -> Listener {
    let name = listener_name(port);
    let plain = servers
        .first()
        .is_some_and(|s| s.server.protocol.is_plain_http());
    let (filter_chains, listener_filters) = if plain {
        let chain = FilterChain {
            filters: vec![http_connection_manager(
                &name,
                &routes::http_name(port),
                rbac_filters,
            )],
            ..Default::default()
        };
        (vec![chain], vec![])
    } else {
        let inspector = ListenerFilter {
            name: TLS_INSPECTOR.into(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(pb::any(
                TLS_INSPECTOR_TYPE,
                &TlsInspector::default(),
            ))),
            ..Default::default()
        };
        (tls_chains(&name, servers, rbac_filters), vec![inspector])
    };
    Listener {
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
    }
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

fn tls_chains(
    stat_prefix: &str,
    servers: &[GatewayServer<'_>],
    rbac_filters: &[HttpFilter],
) -> Vec<FilterChain> {
    let mut chains: Vec<(u8, Vec<String>, GatewayServer<'_>)> = servers
        .iter()
        .map(|s| {
            let names = server_names(&s.server.hosts);
            let rank = match () {
                _ if names.is_empty() => 2,
                _ if names.iter().any(|n| n.contains('*')) => 1,
                _ => 0,
            };
            (rank, names, *s)
        })
        .collect();
    chains.sort_by_key(|(rank, _, _)| *rank); // stable: server order within a rank
    let mut seen = BTreeSet::new();
    let mut default_taken = false;
    let mut out = vec![];
    for (_, names, s) in chains {
        let route_config = routes::https_name(s);
        let fresh: Vec<String> = names
            .iter()
            .filter(|n| seen.insert((*n).clone()))
            .cloned()
            .collect();
        if names.is_empty() {
            if std::mem::replace(&mut default_taken, true) {
                tracing::warn!(gateway = %s.gateway.key(), %route_config, "a second server without SNI names on the port: dropped");
                continue;
            }
        } else if fresh.is_empty() {
            tracing::warn!(gateway = %s.gateway.key(), %route_config, "every SNI name of this server is another's on the port: dropped");
            continue;
        }
        let tls = s.server.tls.as_ref().cloned().unwrap_or(ServerTls {
            mode: None,
            https_redirect: false,
            server_certificate: None,
            private_key: None,
            ca_certificates: None,
            credential_name: None,
        });
        out.push(FilterChain {
            name: route_config.clone(),
            filter_chain_match: (!fresh.is_empty()).then(|| FilterChainMatch {
                server_names: fresh,
                ..Default::default()
            }),
            filters: vec![http_connection_manager(
                stat_prefix,
                &route_config,
                rbac_filters,
            )],
            transport_socket: Some(TransportSocket {
                name: TLS_TRANSPORT_SOCKET.into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pb::any(
                    DOWNSTREAM_TLS_TYPE,
                    &downstream_tls(&tls),
                ))),
            }),
            ..Default::default()
        });
    }
    out
}

fn file(path: &str) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    })
}

/// The server's TLS settings as Envoy's `DownstreamTlsContext`; a
/// `credentialName` wins over file paths, for the CA too (as in Istio).
pub fn downstream_tls(tls: &ServerTls) -> DownstreamTlsContext {
    let mut common = CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
            ..Default::default()
        }),
        alpn_protocols: vec!["h2".into(), "http/1.1".into()],
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
