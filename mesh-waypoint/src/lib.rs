//! mesh-waypoint: the optional L7 proxy of the mesh (Istio's waypoint).
//!
//! Traffic arrives in HBONE tunnels from node agents (`server/`), is routed
//! by Istio VirtualService / DestinationRule semantics received as standard
//! Envoy xDS (`config/`, `route/`), and leaves through `upstream/` to the
//! chosen endpoint — over HBONE when it is a mesh workload. `telemetry/`
//! reports every request. `docs/contracts/waypoint-xds.md` describes the
//! resources it receives.
//!
//! With `--role gateway` the same engine is an ingress gateway
//! (`gateway/`): instead of the HBONE and plain listeners it binds the
//! listeners LDS declares and terminates TLS by SNI
//! (`docs/contracts/gateway-xds.md`).
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod body;
pub mod config;
pub mod gateway;
pub mod health;
pub mod route;
pub mod server;
pub mod sync;
pub mod telemetry;
pub mod upstream;
