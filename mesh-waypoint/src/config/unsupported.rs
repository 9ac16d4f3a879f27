//! "Present but not supported" fields are accepted (Envoy-generated config
//! carries plenty the waypoint does not need); each one is logged once per
//! process so the log says what is ignored without repeating every update.
use std::{collections::HashSet, sync::Mutex};

static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Logs `what` (e.g. `RouteAction.cors`) the first time it is seen.
pub(crate) fn warn_once(what: &str, field: &str) {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(what.to_string())
    {
        tracing::warn!(what, first_at = field, "unsupported xDS field ignored");
    }
}
