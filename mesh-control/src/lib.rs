//! Control plane library: source (YAML directory / Kubernetes), model,
//! AuthorizationPolicy translation (`authz`), analysis (`analyze`), xDS and
//! CA servers (`server`, `ca`), caller authentication (`auth`), admin
//! endpoint (`admin`), wiring (`app`).
pub mod admin;
pub mod analyze;
pub mod app;
pub mod auth;
pub mod authz;
pub mod ca;
pub mod kube_client;
pub mod model;
pub mod server;
pub mod source;
pub mod waypoint;
