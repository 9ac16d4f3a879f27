//! A gateway `Listener` → what its chains do: HTTP connection manager
//! chains (translated as a waypoint's, [`listener::translate`]) and
//! `tcp_proxy` chains ([`TcpChainConfig`]: SNI names, TLS context if
//! terminated, target). The xDS validator accepts a Listener when this
//! translates, so a TCP-only Listener is ACKed.
use envoy_types::pb::envoy::config::listener::v3::Listener;

use super::tcp::TcpTarget;
use crate::config::{
    listener::{self, HCM_FILTER},
    tls::{self, TlsContext},
    ConfigError, ListenerConfig,
};

/// One `tcp_proxy` chain.
#[derive(Debug, Clone)]
pub struct TcpChainConfig {
    /// `filter_chain_match.server_names`; empty = any.
    pub server_names: Vec<String>,
    /// None: plain TCP, or TLS passed through untouched.
    pub tls: Option<TlsContext>,
    pub target: TcpTarget,
}

#[derive(Debug, Clone)]
pub struct GatewayListener {
    pub name: String,
    /// `ip:port`.
    pub address: String,
    /// The HTTP chains, if any.
    pub http: Option<ListenerConfig>,
    pub tcp: Vec<TcpChainConfig>,
}

/// The chains of `l`; a chain with neither an HTTP connection manager nor
/// a `tcp_proxy` is an error.
pub fn translate(l: &Listener) -> Result<GatewayListener, ConfigError> {
    let mut http_chains = vec![];
    let mut tcp = vec![];
    for (i, chain) in l.filter_chains.iter().enumerate() {
        let mut target = None;
        for (j, f) in chain.filters.iter().enumerate() {
            let field = format!("filter_chains[{i}].filters[{j}]");
            if let Some(t) = TcpTarget::from_filter(f, &field)? {
                target = Some(t);
            }
        }
        match target {
            Some(target) => tcp.push(TcpChainConfig {
                server_names: chain
                    .filter_chain_match
                    .as_ref()
                    .map(|m| m.server_names.clone())
                    .unwrap_or_default(),
                tls: tls::translate(
                    chain.transport_socket.as_ref(),
                    &format!("filter_chains[{i}].transport_socket"),
                )?,
                target,
            }),
            None => http_chains.push(chain.clone()),
        }
    }
    let http = if http_chains.is_empty() {
        None
    } else {
        Some(listener::translate(&Listener {
            filter_chains: http_chains,
            ..l.clone()
        })?)
    };
    if http.is_none() && tcp.is_empty() {
        return Err(ConfigError::new(
            "filter_chains",
            format!("no {HCM_FILTER} or {} filter", super::tcp::TCP_PROXY_FILTER),
        ));
    }
    let address = match &http {
        Some(h) => h.address.clone(),
        None => address(l),
    };
    Ok(GatewayListener {
        name: l.name.clone(),
        address,
        http,
        tcp,
    })
}

/// `ip:port` of the listener's socket address.
fn address(l: &Listener) -> String {
    use envoy_types::pb::envoy::config::core::v3::{
        address::Address as Kind, socket_address::PortSpecifier,
    };
    match l.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(Kind::SocketAddress(s)) => match s.port_specifier {
            Some(PortSpecifier::PortValue(p)) => format!("{}:{p}", s.address),
            _ => s.address.clone(),
        },
        _ => String::new(),
    }
}
