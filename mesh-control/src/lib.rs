//! Control plane library. A configuration flows through it in one
//! direction:
//!
//! 1. [`source`]: Kubernetes / Istio YAML, from a local directory or the
//!    Kubernetes API ([`apiserver`] connects to it), read and checked into
//! 2. [`model`]: the mesh as the control plane understands it
//!    ([`model::MeshState`]), independent of any wire format;
//! 3. [`translate`]: the model → the resources the proxies receive (Istio
//!    workload xDS for the agents, Envoy resources for waypoints);
//! 4. [`serve`]: Delta ADS and the Istio CA service over gRPC, to callers
//!    [`authn`] has authenticated, with certificates signed by [`ca`].
//!
//! Beside the pipeline: [`analyze`] (`meshctl analyze`: the source's checks
//! and the translation's findings as a report), [`admin`] (the admin and
//! readiness endpoints) and [`app`] (the process wiring them together).
pub mod admin;
pub mod analyze;
pub mod apiserver;
pub mod app;
pub mod authn;
pub mod ca;
pub mod graph;
pub mod model;
pub mod serve;
pub mod source;
pub mod translate;
