//! The runtime log filter: `RUST_LOG` syntax kept as a default level plus
//! per-target levels, so `level=debug` replaces only the default and
//! `mesh_agent::outbound=trace` only that target (as Envoy's and ztunnel's
//! `/logging` do), applied through a tracing-subscriber reload layer.
//! Changes are all or nothing: one bad level rejects the whole request.
use std::{collections::BTreeMap, sync::Mutex};

use tracing_subscriber::{reload, EnvFilter, Registry};

/// How log lines are written (`--log-format` of every daemon).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Levels accepted by `/logging`.
pub const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// What went wrong changing the log filter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("bad level {level:?} for {target}: use one of off, error, warn, info, debug, trace")]
    BadLevel { target: String, level: String },
    #[error(
        "bad target {0:?}: use a module path such as mesh_agent::outbound or mesh_control::serve"
    )]
    BadTarget(String),
    #[error("invalid log filter {filter:?}: {message}")]
    BadFilter { filter: String, message: String },
    #[error("the log subscriber is gone: {0}")]
    Reload(String),
}

/// The filter as a default level and per-target directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub default: Option<String>,
    /// target (or any directive left of `=`) → level, in target order.
    pub targets: BTreeMap<String, String>,
}

impl Directives {
    pub fn parse(filter: &str) -> Self {
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

    /// Back to `RUST_LOG` syntax: the default first, then targets.
    pub fn render(&self) -> String {
        self.default
            .iter()
            .cloned()
            .chain(self.targets.iter().map(|(t, l)| format!("{t}={l}")))
            .collect::<Vec<_>>()
            .join(",")
    }
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

#[cfg(test)]
mod tests {
    use tracing_subscriber::prelude::*;

    use super::*;

    #[test]
    fn changes_default_and_module_levels() {
        let (layer, control) = LogControl::new("info,h2=warn").unwrap();
        let _subscriber = tracing_subscriber::registry().with(layer);
        assert_eq!(control.current(), "info,h2=warn");
        let set = |pairs: &[(&str, &str)]| {
            control.set(
                &pairs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(set(&[("level", "DEBUG")]).unwrap(), "debug,h2=warn");
        assert_eq!(
            set(&[("mesh_control::server", "trace")]).unwrap(),
            "debug,h2=warn,mesh_control::server=trace"
        );
        assert_eq!(
            set(&[("level", "info"), ("h2", "loud")]).unwrap_err(),
            LogError::BadLevel {
                target: "h2".into(),
                level: "loud".into()
            }
        );
        // All or nothing: the valid half of a rejected change is not applied.
        assert_eq!(
            control.current(),
            "debug,h2=warn,mesh_control::server=trace"
        );
    }

    #[test]
    fn a_dropped_subscriber_is_reported() {
        let (_, control) = LogControl::new("info").unwrap();
        assert!(matches!(
            control.set(&[("level".into(), "debug".into())]),
            Err(LogError::Reload(_))
        ));
        assert_eq!(control.current(), "info");
    }
}
