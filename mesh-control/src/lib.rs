//! Control plane library (issue 3, in progress).
pub mod model;
pub mod server;
