//! Durations in configuration files: a string in [`Syntax::FLAG`]
//! (`"90s"`, `"1h30m"`, `"15"`) or an integer number of seconds, the form
//! the agent's `*_seconds` keys took.
//!
//! ```text
//! #[serde(default, deserialize_with = "mesh_admin::duration::de::option")]
//! drain_timeout: Option<Duration>,
//! ```
use std::{fmt, time::Duration};

use serde::de::{self, Deserializer, Visitor};

use super::Syntax;

/// An optional duration: a string or a number of seconds.
pub fn option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_any(DurationVisitor).map(Some)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"90s\", \"1h30m\" or \"250ms\", or a number of seconds")
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs)
            .map(Duration::from_secs)
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        Syntax::FLAG
            .parse(text)
            .map_err(|error| E::custom(format!("{text:?} is not a duration: {error}")))
    }
}
