//! Control plane library (issue 3, in progress).
pub mod admin;
pub mod app;
pub mod ca;
pub mod model;
pub mod server;
pub mod source;
