//! The active routing config, built from an xDS snapshot as a whole so a
//! request sees one consistent listener + route table. `route::Proxy`
//! swaps it (with the stack built from it) atomically; a snapshot that
//! cannot be built leaves the previous one serving (the xDS validator
//! normally NACKs such resources first).
use std::sync::Arc;

use envoy_types::pb::envoy::config::{listener::v3::Listener, route::v3::RouteConfiguration};
use mesh_xds::{XdsResource, XdsSnapshot, LISTENER_TYPE_URL, ROUTE_TYPE_URL};

use super::{
    fault::FaultConfig,
    listener::{self, ChainConfig, HttpFilter, ListenerConfig, RouteSource},
    route_config,
    table::RouteTable,
    ConfigError,
};

/// One consistent routing config.
#[derive(Debug, Clone)]
pub struct ActiveConfig {
    /// None until LDS delivered a listener.
    pub listener: Option<ListenerConfig>,
    pub table: Arc<RouteTable>,
    /// The HTTP filters to run, in order (the listener's, or fault +
    /// router when there is no listener yet).
    pub filters: Vec<HttpFilter>,
    /// xDS snapshot generation this was built from.
    pub generation: u64,
}

impl Default for ActiveConfig {
    fn default() -> Self {
        ActiveConfig {
            listener: None,
            table: Arc::new(RouteTable::default()),
            filters: default_filters(),
            generation: 0,
        }
    }
}

fn default_filters() -> Vec<HttpFilter> {
    vec![
        HttpFilter::Fault(Arc::new(FaultConfig::default())),
        HttpFilter::Router,
    ]
}

impl ActiveConfig {
    /// Builds from `snap`: the listener named `listener_name` (else the
    /// first one) and the RouteConfiguration it names.
    pub fn from_snapshot(snap: &XdsSnapshot, listener_name: &str) -> Result<Self, ConfigError> {
        let listeners: Vec<&Listener> = snap
            .resources(LISTENER_TYPE_URL)
            .filter_map(|(_, r)| match &*r.resource {
                XdsResource::Listener(l) => Some(&**l),
                _ => None,
            })
            .collect();
        let routes = |name: &str| match snap.get(ROUTE_TYPE_URL, name).map(|r| &*r.resource) {
            Some(XdsResource::RouteConfiguration(rc)) => Some(&**rc),
            _ => None,
        };
        let mut cfg = Self::build(&listeners, routes, listener_name)?;
        cfg.generation = snap.generation;
        Ok(cfg)
    }

    /// Builds from plain resources (what [`from_snapshot`](Self::from_snapshot)
    /// extracts).
    pub fn build<'a>(
        listeners: &[&'a Listener],
        routes: impl Fn(&str) -> Option<&'a RouteConfiguration>,
        listener_name: &str,
    ) -> Result<Self, ConfigError> {
        let chosen = listeners
            .iter()
            .find(|l| l.name == listener_name)
            .or_else(|| listeners.first());
        let listener = chosen
            .map(|l| {
                listener::translate(l).map_err(|e| {
                    ConfigError::new(format!("Listener {}: {}", l.name, e.field), e.reason)
                })
            })
            .transpose()?;
        let table = table_for(listener.as_ref().map(|l| &l.routes), listener_name, &routes)?;
        let filters = listener
            .as_ref()
            .map_or_else(default_filters, |l| l.filters.clone());
        Ok(ActiveConfig {
            listener,
            table,
            filters,
            generation: 0,
        })
    }
}

impl ActiveConfig {
    /// The config one filter chain of `listener` serves (a gateway has one
    /// per chain): the chain's routes and filters.
    pub fn for_chain<'a>(
        listener: &ListenerConfig,
        chain: &ChainConfig,
        routes: impl Fn(&str) -> Option<&'a RouteConfiguration>,
    ) -> Result<Self, ConfigError> {
        let table = table_for(Some(&chain.routes), &listener.name, &routes)?;
        let mut listener = listener.clone();
        listener.routes = chain.routes.clone();
        listener.filters = chain.filters.clone();
        Ok(ActiveConfig {
            listener: Some(listener),
            table,
            filters: chain.filters.clone(),
            generation: 0,
        })
    }
}

/// The route table `source` names (inline, or RDS by name; `fallback`
/// without a source); an RDS name not delivered yet is an empty table.
fn table_for<'a>(
    source: Option<&RouteSource>,
    fallback: &str,
    routes: &impl Fn(&str) -> Option<&'a RouteConfiguration>,
) -> Result<Arc<RouteTable>, ConfigError> {
    let name = match source {
        Some(RouteSource::Inline(t)) => return Ok(t.clone()),
        Some(RouteSource::Rds(n)) => n.as_str(),
        None => fallback,
    };
    Ok(match routes(name) {
        Some(rc) => Arc::new(route_config::translate(rc).map_err(|e| {
            ConfigError::new(format!("RouteConfiguration {name}: {}", e.field), e.reason)
        })?),
        // Not delivered yet: no virtual hosts, every request is NR.
        None => Arc::new(RouteTable::new(name.to_string(), Vec::new())),
    })
}
