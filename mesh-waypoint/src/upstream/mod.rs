//! Hop from the waypoint to an endpoint: clusters (CDS), their endpoints
//! (EDS, resolved against the Address xDS for HBONE), load balancing,
//! connection pools and circuit breakers, outlier detection.
//!
//! - [`api`]: what the route side calls ([`Upstream`]).
//! - [`manager`]: [`ClusterManager`], the [`Upstream`] implementation.
//! - [`cluster`]: the Envoy `Cluster` / `ClusterLoadAssignment` fields honoured;
//!   [`cluster_name`]: Istio's `outbound|port|subset|host` names.
//! - [`directory`]: the Address xDS view (workloads, services).
//! - [`host_set`]: one cluster at run time; [`lb`] its balancers.
//! - [`discovery`]: EDS/STATIC, STRICT_DNS/LOGICAL_DNS ([`dns`]) and
//!   ORIGINAL_DST clusters; [`tls`]: TLS origination.
//! - [`pool`], [`connector`], [`breaker`], [`outlier`], [`guarded`].
pub mod api;
pub mod breaker;
pub mod cluster;
pub mod cluster_name;
pub mod connector;
pub mod directory;
pub mod discovery;
pub mod dns;
pub mod guarded;
pub mod host_set;
pub mod lb;
pub mod manager;
pub mod metrics;
pub mod outlier;
pub mod pool;
pub mod tls;

pub use api::{RetryPermit, SendContext, Upstream, UpstreamError, UpstreamResponse};
pub use directory::{Directory, ServiceEntry, WorkloadEntry};
pub use manager::{validate, validate_with, ClusterManager, ExternalOptions, UpstreamOptions};
pub use metrics::UpstreamMetrics;

#[cfg(test)]
mod tests;
