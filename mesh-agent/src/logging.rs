//! `tracing` set-up. The `log` records that aya-log produces for the eBPF
//! programs are bridged into tracing (target `mesh_ebpf`). Logs go to
//! stderr; stdout is kept for command results (`install` prints JSON).
//!
//! One filter, changeable at runtime by the admin endpoint (`/logging`)
//! through a reload layer, governs everything, including the access log
//! (target `access`, see `access_log.rs`). The access log has its own JSON
//! layer so it stays JSON when the agent's log is text; the agent's layer
//! skips that target so no line is written twice.
//!
//! The filter and `/logging` are the ones every daemon shares
//! (`mesh_admin::log_control`). The `access` target always has an explicit
//! directive, so changing the default level neither silences nor revives
//! the access log.
pub use mesh_admin::log_control::{Directives, LogControl};
use tracing_subscriber::{filter::filter_fn, fmt, prelude::*};

use crate::{access_log, config::LogFormat};

/// The starting filter: `--log`, plus `access=info|off` from
/// `--access-log` unless `--log` already names the access target.
pub fn initial_filter(log: &str, access_log: bool) -> String {
    let mut directives = Directives::parse(log);
    directives
        .targets
        .entry(access_log::TARGET.into())
        .or_insert_with(|| if access_log { "info" } else { "off" }.into());
    directives.render()
}

/// Installs the global subscriber; the returned control changes its filter.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<LogControl> {
    let (reload, control) = LogControl::new(filter)?;
    let not_access = filter_fn(|meta| meta.target() != access_log::TARGET);
    let registry = tracing_subscriber::registry()
        .with(reload)
        .with(access_log::layer(std::io::stderr));
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(true)
                    .with_filter(not_access),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_filter(not_access),
            )
            .try_init()?,
    }
    Ok(control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::tests::Buffer;
    use mesh_admin::log_control::LogError;

    fn set(control: &LogControl, pairs: &[(&str, &str)]) -> Result<String, LogError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(t, l)| (t.to_string(), l.to_string()))
            .collect();
        control.set(&pairs)
    }

    #[test]
    fn access_directive_is_always_explicit() {
        assert_eq!(initial_filter("info", true), "info,access=info");
        assert_eq!(initial_filter("debug", false), "debug,access=off");
        assert_eq!(initial_filter("info,access=off", true), "info,access=off");
    }

    #[test]
    fn levels_change_at_runtime_and_bad_ones_are_named() {
        let (layer, control) = LogControl::new("info,access=info").unwrap();
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(layer).with(
            fmt::layer()
                .with_writer(buffer.clone())
                .with_ansi(false)
                .with_filter(filter_fn(|m| m.target() != access_log::TARGET)),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "mesh_agent::outbound", "hidden");
            assert_eq!(
                set(&control, &[("mesh_agent::outbound", "debug")]).unwrap(),
                "info,access=info,mesh_agent::outbound=debug"
            );
            tracing::debug!(target: "mesh_agent::outbound", "shown");
            tracing::debug!(target: "mesh_agent::inbound", "still hidden");
            assert_eq!(
                set(&control, &[("level", "warn"), ("access", "off")]).unwrap(),
                "warn,access=off,mesh_agent::outbound=debug"
            );
            let err = set(&control, &[("level", "debug"), ("access", "loud")]).unwrap_err();
            assert!(err.to_string().contains("\"loud\""), "{err}");
            assert!(err.to_string().contains("access"), "{err}");
            assert!(set(&control, &[("a,b", "info")]).is_err());
        });
        // All or nothing: the rejected change left the filter as it was.
        assert_eq!(
            control.current(),
            "warn,access=off,mesh_agent::outbound=debug"
        );
        let lines = buffer.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("shown"));
    }
}
