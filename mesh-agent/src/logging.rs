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
//! The filter is kept as a default level plus per-target levels, so
//! `POST /logging?level=debug` replaces only the default and
//! `POST /logging?mesh_agent::outbound=trace` only that target, as Envoy's,
//! ztunnel's and our control plane's `/logging` do. The `access` target
//! always has an explicit directive, so changing the default level neither
//! silences nor revives the access log.
use std::{collections::BTreeMap, sync::Mutex};

use tracing_subscriber::{filter::filter_fn, fmt, prelude::*, reload, EnvFilter, Registry};

use crate::{access_log, config::LogFormat};

/// Levels accepted by `/logging`.
pub const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// What went wrong changing the log filter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("bad level {level:?} for {target}: use one of off, error, warn, info, debug, trace")]
    BadLevel { target: String, level: String },
    #[error("bad target {0:?}: use a module path such as mesh_agent::outbound")]
    BadTarget(String),
    #[error("invalid log filter {filter:?}: {message}")]
    BadFilter { filter: String, message: String },
    #[error("the log subscriber is gone: {0}")]
    Reload(String),
}

/// The filter as a default level and per-target directives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directives {
    default: Option<String>,
    /// target (or any directive left of `=`) → level, in target order.
    targets: BTreeMap<String, String>,
}

impl Directives {
    fn parse(filter: &str) -> Self {
        let mut directives = Directives {
            default: None,
            targets: BTreeMap::new(),
        };
        for part in filter.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.rsplit_once('=') {
                Some((target, level)) => {
                    directives.targets.insert(target.into(), level.into());
                }
                None => directives.default = Some(part.into()),
            }
        }
        directives
    }

    fn render(&self) -> String {
        self.default
            .iter()
            .cloned()
            .chain(self.targets.iter().map(|(t, l)| format!("{t}={l}")))
            .collect::<Vec<_>>()
            .join(",")
    }
}

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

/// The runtime handle on the log filter, shared with the admin endpoint.
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<Directives>,
}

impl LogControl {
    /// The reload layer to put first on a `Registry`, and its control.
    pub fn new(filter: &str) -> Result<(reload::Layer<EnvFilter, Registry>, LogControl), LogError> {
        let env = EnvFilter::try_new(filter).map_err(|e| LogError::BadFilter {
            filter: filter.into(),
            message: e.to_string(),
        })?;
        let (layer, handle) = reload::Layer::new(env);
        let control = LogControl {
            handle,
            current: Mutex::new(Directives::parse(filter)),
        };
        Ok((layer, control))
    }

    /// The filter in force, in `RUST_LOG` syntax.
    pub fn current(&self) -> String {
        self.lock().render()
    }

    /// Applies `(target, level)` pairs (target `level` = the default
    /// level) all or nothing; returns the new filter.
    pub fn set(&self, changes: &[(String, String)]) -> Result<String, LogError> {
        let mut current = self.lock();
        let mut next = current.clone();
        for (target, level) in changes {
            let lower = level.to_ascii_lowercase();
            if !LEVELS.contains(&lower.as_str()) {
                return Err(LogError::BadLevel {
                    target: target.clone(),
                    level: level.clone(),
                });
            }
            let valid_target = !target.is_empty()
                && target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'));
            if !valid_target {
                return Err(LogError::BadTarget(target.clone()));
            }
            if target == "level" {
                next.default = Some(lower);
            } else {
                next.targets.insert(target.clone(), lower);
            }
        }
        let text = next.render();
        let filter = EnvFilter::try_new(&text).map_err(|e| LogError::BadFilter {
            filter: text.clone(),
            message: e.to_string(),
        })?;
        self.handle
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))?;
        *current = next;
        Ok(text)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Directives> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
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
