//! What the admin endpoints and listeners of every mesh daemon (node
//! agent, control plane, waypoint) share, so they behave and defend
//! themselves the same way everywhere:
//!
//! - [`log_control`]: the `tracing` filter kept as a default level plus
//!   per-target levels, changed at runtime through a reload layer;
//! - [`logging`]: the `/logging` endpoint on top of it (`GET` shows the
//!   filter, `POST ?level=<lvl>` / `?<target>=<lvl>` changes it), and the
//!   query-string decoding it needs;
//! - [`listen`]: the accept loop every listener uses: connection caps
//!   (total and per source IP) and back-off on accept errors;
//! - [`http_serve`]: HTTP/1 on such a listener with header-read and
//!   connection-age limits, for the small servers (admin, probes, metrics);
//! - [`rate_limit`]: logging at most once per interval what a remote peer
//!   can trigger at will.
//!
//! Each daemon keeps its own subscriber set-up (layers, formats) and its
//! own routes.
#![forbid(unsafe_code)]

pub mod http_serve;
pub mod listen;
pub mod log_control;
pub mod logging;
pub mod rate_limit;
