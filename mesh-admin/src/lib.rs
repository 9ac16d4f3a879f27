//! What the admin endpoints of every mesh daemon (node agent, control
//! plane, and the waypoint to come) share, so `/logging` behaves the same
//! everywhere:
//!
//! - [`log_control`]: the `tracing` filter kept as a default level plus
//!   per-target levels, changed at runtime through a reload layer;
//! - [`logging`]: the `/logging` endpoint on top of it (`GET` shows the
//!   filter, `POST ?level=<lvl>` / `?<target>=<lvl>` changes it), and the
//!   query-string decoding it needs.
//!
//! Each daemon keeps its own subscriber set-up (layers, formats) and its
//! own HTTP plumbing; this crate has no HTTP server.
#![forbid(unsafe_code)]

pub mod log_control;
pub mod logging;
