//! `MeshState` → the resources the control plane serves. Pure functions of
//! the model, called once per state change by [`crate::serve::resources`]
//! (and by the source and the analyzer for the findings).
//!
//! - [`workload`]: Istio workload xDS for the node agents — one `Address`
//!   per pod and service, one `Authorization` per policy plus the converted
//!   STRICT PeerAuthentication (contract: docs/contracts/workload-xds.md).
//! - [`authorization`]: AuthorizationPolicy → `istio.security.Authorization`
//!   for the agents (L4), and the findings of that conversion.
//! - [`waypoint`]: Envoy Listener, RouteConfiguration, Cluster and
//!   ClusterLoadAssignment resources for waypoints (contract:
//!   docs/contracts/waypoint-xds.md).
//! - [`gateway`]: Envoy Listener and RouteConfiguration resources for
//!   ingress gateways (`networking.istio.io` Gateway; contract:
//!   docs/contracts/gateway-xds.md), on the waypoints' clusters.
pub mod authorization;
pub mod gateway;
pub mod waypoint;
pub mod workload;
