//! The runtime every mesh daemon (node agent, control plane, waypoint)
//! shares, so they read their settings, stop, and defend their
//! listeners the same way everywhere:
//!
//! - [`duration`]: durations as Go's `time.ParseDuration` reads them, for
//!   flags, the agent's config file and Istio's YAML;
//! - [`drain`]: stopping gracefully on SIGTERM, SIGINT or
//!   `/quitquitquit`: readiness off, listeners and connections told to
//!   finish, a drain deadline;
//! - [`flags`]: parsing a command line whose environment variables were
//!   renamed with their flags, old names still read;
//! - [`log_control`]: the `tracing` filter kept as a default level plus
//!   per-target levels, changed at runtime through a reload layer, and
//!   the log line formats;
//! - [`logging`]: the `/logging` endpoint on top of it (`GET` shows the
//!   filter, `POST ?level=<lvl>` / `?<target>=<lvl>` changes it), and the
//!   query-string decoding it needs;
//! - [`listen`]: the accept loop every listener uses: connection caps
//!   (total and per source IP) and back-off on accept errors;
//! - [`http_serve`]: HTTP/1 on such a listener with header-read and
//!   connection-age limits, for the small servers (admin, probes, metrics);
//! - [`rate_limit`]: logging at most once per interval what a remote peer
//!   can trigger at will;
//! - [`kleene`]: three-valued AND/OR over `Option<bool>`, as L4 and L7
//!   authorization evaluate policies that may hold a condition they cannot
//!   tell.
//!
//! Each daemon keeps its own subscriber set-up (layers, formats) and its
//! own routes.
#![forbid(unsafe_code)]

pub mod drain;
pub mod duration;
pub mod flags;
pub mod http_serve;
pub mod kleene;
pub mod listen;
pub mod log_control;
pub mod logging;
pub mod rate_limit;
