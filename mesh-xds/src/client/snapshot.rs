//! The client's view of the control plane: per type URL the resources it
//! has accepted, decoded, plus the connection status. Published whole on a
//! `watch` channel; per-type maps are behind `Arc`, so a new snapshot after
//! an update of one type shares the others.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use crate::proto::{istio_security::Authorization, istio_workload};

/// A decoded and validated resource. `istio.workload.Address` is split into
/// its two kinds.
// Each value lives behind an `Arc` in the cache, so the variant sizes cost
// nothing per entry; boxing would only add an indirection on every access.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum XdsResource {
    Workload(istio_workload::Workload),
    Service(istio_workload::Service),
    Authorization(Authorization),
    /// Envoy LDS / RDS / CDS / EDS resources (the waypoint's config).
    Listener(Box<crate::proto::envoy_listener::Listener>),
    RouteConfiguration(Box<crate::proto::envoy_route::RouteConfiguration>),
    Cluster(Box<crate::proto::envoy_cluster::Cluster>),
    ClusterLoadAssignment(Box<crate::proto::envoy_endpoint::ClusterLoadAssignment>),
    /// A type this crate does not decode, kept as received.
    Other(crate::proto::wkt::Any),
}

/// One accepted resource and the version the server gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedResource {
    pub version: String,
    pub resource: Arc<XdsResource>,
}

/// Resources of one type, by resource name.
pub type TypeCache = BTreeMap<String, CachedResource>;

/// Everything the client knows, as of one moment.
#[derive(Debug, Clone, Default)]
pub struct XdsSnapshot {
    pub(crate) resources: BTreeMap<String, Arc<TypeCache>>,
    /// True while a stream to the control plane is up. While it is down the
    /// resources are those last accepted (serve them: stale beats empty).
    pub connected: bool,
    /// The last connection error or NACK reason; cleared when a response is
    /// accepted.
    pub last_error: Option<String>,
    /// Per type URL, the nonce of the last ACKed response.
    pub acked_nonce: BTreeMap<String, String>,
    /// Type URLs for which at least one response was accepted since the
    /// client started (what "synced" means for readiness).
    pub synced: BTreeSet<String>,
    /// Incremented on every accepted change of resources.
    pub generation: u64,
}

impl XdsSnapshot {
    /// Resources of `type_url` (empty if none).
    pub fn resources(&self, type_url: &str) -> impl Iterator<Item = (&str, &CachedResource)> {
        self.resources
            .get(type_url)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }

    /// One resource by type URL and name.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&CachedResource> {
        self.resources.get(type_url)?.get(name)
    }

    /// What the client holds of `type_url`, name → version (the
    /// `initial_resource_versions` it sends on reconnect).
    pub fn versions(&self, type_url: &str) -> BTreeMap<String, String> {
        self.resources(type_url)
            .map(|(n, r)| (n.to_string(), r.version.clone()))
            .collect()
    }

    /// All workloads, by uid.
    pub fn workloads(&self) -> impl Iterator<Item = (&str, &istio_workload::Workload)> {
        self.resources(crate::ADDRESS_TYPE_URL)
            .filter_map(|(n, r)| match &*r.resource {
                XdsResource::Workload(w) => Some((n, w)),
                _ => None,
            })
    }

    /// All services, by `<namespace>/<hostname>`.
    pub fn services(&self) -> impl Iterator<Item = (&str, &istio_workload::Service)> {
        self.resources(crate::ADDRESS_TYPE_URL)
            .filter_map(|(n, r)| match &*r.resource {
                XdsResource::Service(s) => Some((n, s)),
                _ => None,
            })
    }

    /// All authorization policies, by `<namespace>/<name>`.
    pub fn authorizations(&self) -> impl Iterator<Item = (&str, &Authorization)> {
        self.resources(crate::AUTHORIZATION_TYPE_URL)
            .filter_map(|(n, r)| match &*r.resource {
                XdsResource::Authorization(a) => Some((n, a)),
                _ => None,
            })
    }

    /// The workload with this uid (resource name).
    pub fn workload(&self, uid: &str) -> Option<&istio_workload::Workload> {
        match &*self.get(crate::ADDRESS_TYPE_URL, uid)?.resource {
            XdsResource::Workload(w) => Some(w),
            _ => None,
        }
    }

    /// The service with this resource name (`<namespace>/<hostname>`).
    pub fn service(&self, name: &str) -> Option<&istio_workload::Service> {
        match &*self.get(crate::ADDRESS_TYPE_URL, name)?.resource {
            XdsResource::Service(s) => Some(s),
            _ => None,
        }
    }

    /// The authorization policy with this resource name (`<namespace>/<name>`).
    pub fn authorization(&self, name: &str) -> Option<&Authorization> {
        match &*self.get(crate::AUTHORIZATION_TYPE_URL, name)?.resource {
            XdsResource::Authorization(a) => Some(a),
            _ => None,
        }
    }

    /// Replaces the resources of one type (the client applies a whole,
    /// validated response at once).
    pub(crate) fn set_type(&mut self, type_url: &str, cache: TypeCache) {
        self.resources.insert(type_url.to_string(), Arc::new(cache));
    }

    pub(crate) fn type_cache(&self, type_url: &str) -> TypeCache {
        self.resources
            .get(type_url)
            .map(|m| (**m).clone())
            .unwrap_or_default()
    }
}
