//! Every regex from xDS (route `safe_regex`, header / string matchers,
//! RBAC, `regex_rewrite`) is compiled by [`mesh_regex::compile`]: RE2's
//! ASCII `\w \d \s`, and the program-size budget that stands in for
//! Envoy's `re2.max_program_size` (the control plane checks with the same
//! function, so what it serves compiles here). A VirtualService or
//! AuthorizationPolicy cannot make the waypoint spend unbounded memory
//! compiling, or CPU matching, one pattern; a refused pattern names its
//! field, and the resource is NACKed with the last good config serving.
use mesh_regex::Anchoring;
use regex::Regex;

use super::ConfigError;

/// Compiles `pattern` as the config gave it; errors name `field`.
pub fn compile(pattern: &str, anchoring: Anchoring, field: &str) -> Result<Regex, ConfigError> {
    mesh_regex::compile(pattern, anchoring).map_err(|e| ConfigError::new(field, e.to_string()))
}
