//! `Listener` → [`ListenerConfig`]: its filter chains, each with the SNI
//! names it matches, its TLS context and its HttpConnectionManager's
//! route source and ordered HTTP filters. A waypoint serves the first
//! chain; a gateway serves them all (`gateway`).
use std::sync::Arc;

use envoy_types::pb::envoy::config::{
    core::v3::{address::Address as PbAddressKind, socket_address::PortSpecifier},
    listener::v3::{filter::ConfigType, Listener},
};
use envoy_types::pb::envoy::extensions::filters::{
    http::{fault::v3::HttpFault, rbac::v3::Rbac},
    network::http_connection_manager::v3::{
        http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
    },
};

use super::{
    at,
    fault::{FaultConfig, FAULT_FILTER, FAULT_TYPE},
    rbac::{compile_filter, RbacRules, RBAC_FILTER_PREFIX, RBAC_TYPE},
    route_config,
    table::RouteTable,
    tls::{self, TlsContext},
    unsupported::warn_once,
    wkt::{any_type, decode_any},
    ConfigError,
};

pub const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
const HCM_TYPE: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// One HTTP filter of the chain, in listener order.
#[derive(Debug, Clone)]
pub enum HttpFilter {
    /// The listener-level fault config (usually empty; routes override).
    Fault(Arc<FaultConfig>),
    /// An RBAC filter by name; `rules: None` enforces nothing unless a
    /// route overrides it.
    Rbac {
        name: String,
        rules: Option<Arc<RbacRules>>,
    },
    Router,
}

impl HttpFilter {
    pub fn name(&self) -> &str {
        match self {
            HttpFilter::Fault(_) => FAULT_FILTER,
            HttpFilter::Rbac { name, .. } => name,
            HttpFilter::Router => ROUTER_FILTER,
        }
    }
}

/// Where the listener's routes come from.
#[derive(Debug, Clone)]
pub enum RouteSource {
    /// RDS by name.
    Rds(String),
    /// Inline `route_config`.
    Inline(Arc<RouteTable>),
}

/// One filter chain with an HttpConnectionManager.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// `filter_chain_match.server_names` (SNI); empty = any.
    pub server_names: Vec<String>,
    /// None: plain HTTP/1.1 and h2c.
    pub tls: Option<TlsContext>,
    pub routes: RouteSource,
    pub filters: Vec<HttpFilter>,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    /// `ip:port` as configured (a gateway binds it; a waypoint binds its
    /// flags).
    pub address: String,
    /// The first chain's route source and filters (what a waypoint serves).
    pub routes: RouteSource,
    pub filters: Vec<HttpFilter>,
    /// Every chain with an HttpConnectionManager, in listener order.
    pub chains: Vec<ChainConfig>,
}

pub fn translate(l: &Listener) -> Result<ListenerConfig, ConfigError> {
    let address = match l.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(PbAddressKind::SocketAddress(s)) => match s.port_specifier {
            Some(PortSpecifier::PortValue(p)) => format!("{}:{p}", s.address),
            _ => s.address.clone(),
        },
        _ => String::new(),
    };
    let mut chains = Vec::new();
    for (i, chain) in l.filter_chains.iter().enumerate() {
        let mut found = None;
        for (j, f) in chain.filters.iter().enumerate() {
            let field = format!("filter_chains[{i}].filters[{j}]");
            let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if f.name != HCM_FILTER && any_type(any) != HCM_TYPE {
                warn_once(&format!("network filter {}", f.name), &field);
                continue;
            }
            if found.is_some() {
                warn_once("more than one HttpConnectionManager", &field);
                continue;
            }
            let hcm: HttpConnectionManager =
                decode_any(any, HCM_TYPE, &at(&field, "typed_config"))?;
            found = Some(hcm_config(&hcm, &at(&field, "typed_config"))?);
        }
        let Some((routes, filters)) = found else {
            continue;
        };
        chains.push(ChainConfig {
            server_names: chain
                .filter_chain_match
                .as_ref()
                .map(|m| m.server_names.clone())
                .unwrap_or_default(),
            tls: tls::translate(
                chain.transport_socket.as_ref(),
                &format!("filter_chains[{i}].transport_socket"),
            )?,
            routes,
            filters,
        });
    }
    let first = chains
        .first()
        .ok_or_else(|| ConfigError::new("filter_chains", format!("no {HCM_FILTER} filter")))?;
    Ok(ListenerConfig {
        name: l.name.clone(),
        address,
        routes: first.routes.clone(),
        filters: first.filters.clone(),
        chains,
    })
}

fn hcm_config(
    hcm: &HttpConnectionManager,
    field: &str,
) -> Result<(RouteSource, Vec<HttpFilter>), ConfigError> {
    let routes = match &hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) if !rds.route_config_name.is_empty() => {
            RouteSource::Rds(rds.route_config_name.clone())
        }
        Some(RouteSpecifier::Rds(_)) => {
            return Err(ConfigError::new(
                at(field, "rds.route_config_name"),
                "empty",
            ))
        }
        Some(RouteSpecifier::RouteConfig(rc)) => {
            RouteSource::Inline(Arc::new(route_config::translate(rc).map_err(|e| {
                ConfigError::new(format!("{field}.route_config.{}", e.field), e.reason)
            })?))
        }
        _ => {
            return Err(ConfigError::new(
                field,
                "route_specifier must be rds or route_config",
            ))
        }
    };
    let mut filters = Vec::new();
    for (i, f) in hcm.http_filters.iter().enumerate() {
        let ff = format!("{field}.http_filters[{i}]");
        if f.disabled {
            continue;
        }
        let any = match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(a)) => Some(a),
            _ => None,
        };
        let filter = if f.name == FAULT_FILTER {
            let fault = match any {
                Some(a) => decode_any::<HttpFault>(a, FAULT_TYPE, &at(&ff, "typed_config"))?,
                None => HttpFault::default(),
            };
            HttpFilter::Fault(Arc::new(FaultConfig::compile(
                &fault,
                &at(&ff, "typed_config"),
            )?))
        } else if f.name.starts_with(RBAC_FILTER_PREFIX) {
            let rbac = match any {
                Some(a) => decode_any::<Rbac>(a, RBAC_TYPE, &at(&ff, "typed_config"))?,
                None => Rbac::default(),
            };
            HttpFilter::Rbac {
                name: f.name.clone(),
                rules: compile_filter(&rbac, &at(&ff, "typed_config"))?.map(Arc::new),
            }
        } else if f.name == ROUTER_FILTER {
            HttpFilter::Router
        } else {
            warn_once(&format!("http filter {}", f.name), &ff);
            continue;
        };
        filters.push(filter);
    }
    match filters.iter().position(|f| matches!(f, HttpFilter::Router)) {
        Some(p) if p == filters.len() - 1 => {}
        Some(_) => {
            return Err(ConfigError::new(
                at(field, "http_filters"),
                format!("{ROUTER_FILTER} must be the last filter"),
            ))
        }
        None => {
            return Err(ConfigError::new(
                at(field, "http_filters"),
                format!("no {ROUTER_FILTER}"),
            ))
        }
    }
    Ok((routes, filters))
}
