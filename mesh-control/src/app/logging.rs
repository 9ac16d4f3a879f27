//! `tracing` to stderr, as text or JSON lines, with a filter that the admin
//! endpoint can change at runtime (`POST /logging`) through a
//! tracing-subscriber reload layer.
//!
//! The filter and `/logging` are the ones every daemon shares
//! (`mesh_admin::log_control`).
pub use mesh_admin::log_control::{LogControl, LogError};
use tracing_subscriber::{fmt, prelude::*};

use super::config::LogFormat;

/// Installs the global subscriber; the returned control changes its filter.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<LogControl> {
    let (layer, control) = LogControl::new(filter)?;
    let registry = tracing_subscriber::registry().with(layer);
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(true),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
    }
    Ok(control)
}
