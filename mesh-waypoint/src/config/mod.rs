//! Envoy LDS / RDS resources → the waypoint's compiled, immutable routing
//! config.
//!
//! Translation and validation are one code path: [`validate`] translates a
//! resource and throws the result away, so whatever the xDS client ACKs is
//! exactly what [`ConfigStore::apply`] can build. Errors name the field
//! path (`virtual_hosts[0].routes[2].match.safe_regex.regex`).
//!
//! - [`matcher`]: string / header / query matchers, the request view they read
//! - [`percent`]: Envoy's `FractionalPercent`
//! - [`table`]: the compiled model (`RouteTable`, `VirtualHost`, `Route`, …)
//! - [`route_config`] / [`action`]: RouteConfiguration and RouteAction translation
//! - [`headers`]: header add / remove edits
//! - [`fault`] / [`rbac`]: the per-filter configs
//! - [`listener`]: the Listener's filter chains and HttpConnectionManagers
//! - [`tls`]: a filter chain's `DownstreamTlsContext`
//! - [`store`]: the active config (listener + table + filters)
//! - [`dump`]: the `/config_dump` view of it
pub mod action;
pub mod dump;
pub mod fault;
pub mod headers;
pub mod listener;
pub mod matcher;
pub mod percent;
pub mod rbac;
pub mod regex_budget;
pub mod route_config;
pub mod store;
pub mod table;
pub mod tls;
mod unsupported;
mod validate;
mod wkt;

pub use listener::{ChainConfig, HttpFilter, ListenerConfig};
pub use store::ActiveConfig;
pub use table::RouteTable;
pub use validate::validate;

/// A resource field the waypoint cannot use: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// Path from the resource root, e.g. `virtual_hosts[0].domains[1]`.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ConfigError> for mesh_xds::FieldRejection {
    fn from(e: ConfigError) -> Self {
        (e.field, e.reason)
    }
}

/// Joins a field path: `at("routes[1]", "match")` → `routes[1].match`.
pub(crate) fn at(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else {
        format!("{base}.{field}")
    }
}

#[cfg(test)]
mod tests;
