//! Control plane library (issue 3, in progress).
pub mod analyze;
pub mod app;
pub mod authz;
pub mod ca;
pub mod model;
pub mod server;
pub mod source;
