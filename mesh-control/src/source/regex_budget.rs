//! Every regex the configuration gives a proxy is compiled here first with
//! [`mesh_regex::compile`], the function the waypoint compiles with (RE2's
//! ASCII perl classes, the program-size budget that stands in for Istio's
//! RE2 limit), so a configuration that would cost the proxies unbounded CPU
//! is rejected with its resource and field, the last good one keeps
//! serving, and whatever is served compiles in the waypoint.
use mesh_regex::{Anchoring, RegexError};

/// Compiles `pattern` anchored (how a full-match regex is compiled) and as
/// written (how a rewrite searches with it).
pub(crate) fn check(pattern: &str) -> Result<(), RegexError> {
    mesh_regex::compile(pattern, Anchoring::Full)?;
    mesh_regex::compile(pattern, Anchoring::Search)?;
    Ok(())
}
