//! The small xDS client shared by the agent and the waypoint, and the
//! protobuf/gRPC definitions the control plane serves.
//!
//! - [`proto`]: our own minimal `.proto` files (wire-compatible with Envoy's
//!   discovery v3, Istio's workload/authorization types and Istio's CA),
//!   compiled with client *and* server stubs:
//!   [`proto::envoy_discovery`], [`proto::envoy_core`], [`proto::google_rpc`],
//!   [`proto::istio_workload`], [`proto::istio_security`], [`proto::istio_ca`].
//! - [`client`]: a Delta ADS client ([`XdsClient::spawn`]) that keeps typed,
//!   validated caches and publishes them as an [`XdsSnapshot`] on a
//!   `tokio::sync::watch` channel, ACKing/NACKing every response.
//! - [`workload`]: the Address-xDS workload model both daemons use.
//! - [`unknown_fields`]: authorization fields this build does not declare,
//!   kept as markers so their rules fail closed.
//! - `test_ads` (cargo feature `test-ads`, for tests only): a scripted
//!   Delta ADS server that hands each client stream to the test.
#![forbid(unsafe_code)]

pub mod client;
pub mod proto;
#[cfg(feature = "test-ads")]
pub mod test_ads;
pub mod token;
pub mod transport;
pub mod unknown_fields;
pub mod workload;

pub use client::{
    Backoff, CachedResource, FieldRejection, Validator, XdsClient, XdsClientConfig, XdsHandle,
    XdsResource, XdsSnapshot, XdsTls,
};

/// Type URL of Istio's workload-discovery resource (a workload or a service).
pub const ADDRESS_TYPE_URL: &str = "type.googleapis.com/istio.workload.Address";
/// Type URL of Istio's L4 authorization policy resource.
pub const AUTHORIZATION_TYPE_URL: &str = "type.googleapis.com/istio.security.Authorization";

/// Envoy's Listener (LDS), consumed by waypoints (and a stock Envoy).
pub const LISTENER_TYPE_URL: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Envoy's RouteConfiguration (RDS).
pub const ROUTE_TYPE_URL: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Envoy's Cluster (CDS).
pub const CLUSTER_TYPE_URL: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Envoy's ClusterLoadAssignment (EDS).
pub const ENDPOINT_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
