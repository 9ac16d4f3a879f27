//! What the agent knows and has done, beside the data path:
//! - [`view`]: the mesh view (workloads, ServiceEntry endpoints outside
//!   the mesh, services, policies) and [`xds`], which builds it from the
//!   xDS snapshot (tests.rs checks that build), with [`details`] (the
//!   resources' other fields) and [`waypoint`] (waypoints named by
//!   hostname, resolved);
//! - [`runtime`]: the mesh side's handles (view, HBONE client,
//!   certificates, xDS state), present when a control plane is configured;
//! - [`inputs`]: the one bundle the outbound and inbound proxies take;
//! - [`connections`] and [`outcome`]: the connections carried, how each
//!   ended, and Istio's TCP metrics and the access log recorded from them.
pub mod connections;
pub mod details;
pub mod inputs;
pub mod outcome;
pub mod runtime;
pub mod view;
pub mod waypoint;
pub mod xds;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
pub(crate) mod istiod_shape;
#[cfg(test)]
mod istiod_shape_tests;
#[cfg(test)]
mod tests;
