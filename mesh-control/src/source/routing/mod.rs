//! `networking.istio.io` (v1, v1beta1, v1alpha3) VirtualService and
//! DestinationRule: YAML → the typed models of [`crate::model::routing`],
//! validated as istiod's webhook validates them, each problem naming the
//! field (`spec.http[0].route[1].weight`). This module holds what both
//! kinds share: durations, percentages, string matches, destinations,
//! header operations; [`super::virtual_service`] and
//! [`super::destination_rule`] walk the two specs.
//!
//! Tolerated with a warning, never silently: a `// comment` after a scalar
//! (`simple: RANDOM  // the default`), which YAML reads as part of the
//! value and istiod rejects; hand-written notes do it. Only typed scalars
//! (enums, numbers, durations, label values) are trimmed, never free text
//! such as a URI or a regex.
use std::{collections::BTreeMap, time::Duration};

use serde_yaml::{Mapping, Value};

use super::fields::{self, Reporter};
use crate::model::routing::{Destination, HeaderOperations, Headers, Percent, StringMatch};

/// The versions of `networking.istio.io` whose VirtualService and
/// DestinationRule have the same schema.
pub(crate) const VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// A [`Reporter`] and the load's warnings.
pub(crate) struct Cx<'a, 'r> {
    pub rep: &'a mut Reporter<'r>,
    pub warnings: &'a mut Vec<String>,
}

impl Cx<'_, '_> {
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.rep.error(field, message);
    }

    pub fn warn(&mut self, field: &str, message: impl std::fmt::Display) {
        self.warnings.push(format!(
            "{}: {}: {field}: {message}",
            self.rep.file, self.rep.resource
        ));
    }

    pub fn count(&self) -> usize {
        self.rep.count()
    }

    /// Rejects an apiVersion other than [`VERSIONS`]; true when accepted.
    pub fn check_version(&mut self, kind: &str, version: &str) -> bool {
        let ok = VERSIONS.contains(&version);
        if !ok {
            self.error(
                "apiVersion",
                format!("networking.istio.io/{version} is not a {kind} version (use networking.istio.io/v1, v1beta1 or v1alpha3)"),
            );
        }
        ok
    }
}

/// `value` as a mapping, or a problem.
pub(crate) fn mapping<'v>(
    cx: &mut Cx<'_, '_>,
    value: &'v Value,
    field: &str,
) -> Option<&'v Mapping> {
    match value {
        Value::Mapping(map) => Some(map),
        other => {
            cx.error(
                field,
                format!("expected a mapping, found {}", fields::type_name(other)),
            );
            None
        }
    }
}

/// The entries of a mapping in file order, `null` values left out (absent,
/// as in Kubernetes), with the field path of each.
pub(crate) fn entries<'v>(
    cx: &mut Cx<'_, '_>,
    value: &'v Value,
    field: &str,
) -> Vec<(&'v str, &'v Value, String)> {
    let Some(map) = mapping(cx, value, field) else {
        return vec![];
    };
    let mut out = vec![];
    for (key, value) in map {
        match key.as_str() {
            Some(_) if value.is_null() => {}
            Some(key) => out.push((key, value, join(field, key))),
            None => cx.error(field, format!("key {} is not a string", fields::show(key))),
        }
    }
    out
}

/// `spec` + `http` → `spec.http`.
pub(crate) fn join(field: &str, key: &str) -> String {
    if field.is_empty() {
        key.to_string()
    } else {
        format!("{field}.{key}")
    }
}

/// The items of a list (absent: none), with their field paths.
pub(crate) fn list<'v>(
    cx: &mut Cx<'_, '_>,
    value: &'v Value,
    field: &str,
) -> Vec<(&'v Value, String)> {
    match value {
        Value::Null => vec![],
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (item, format!("{field}[{i}]")))
            .collect(),
        other => {
            cx.error(
                field,
                format!("expected a list, found {}", fields::type_name(other)),
            );
            vec![]
        }
    }
}

/// A free-text string (URI, host, regex): taken as written.
pub(crate) fn text(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        other => {
            cx.error(
                field,
                format!("expected a string, found {}", fields::show(other)),
            );
            None
        }
    }
}

/// A non-empty free-text string.
pub(crate) fn req_text(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<String> {
    let s = text(cx, value, field)?;
    if s.is_empty() {
        cx.error(field, "must not be empty");
        return None;
    }
    Some(s)
}

/// A list of non-empty strings.
pub(crate) fn strings(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Vec<String> {
    fields::strings(cx.rep, value, field)
}

/// The text of a typed scalar (number, enum, duration, label value), with
/// a trailing `// comment` removed and warned about.
fn scalar(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<String> {
    match value {
        Value::String(s) => {
            if let Some(at) = s.find(" //").or_else(|| s.find("\t//")) {
                let kept = s[..at].trim_end();
                if !kept.is_empty() {
                    cx.warn(
                        field,
                        format!("{s:?}: \"//\" does not start a comment in YAML (istiod would reject this value); read as {kept:?}"),
                    );
                    return Some(kept.to_string());
                }
            }
            Some(s.clone())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            cx.error(
                field,
                format!("expected a scalar, found {}", fields::type_name(other)),
            );
            None
        }
    }
}

/// One of `choices` (an Istio enum).
pub(crate) fn choice(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    field: &str,
    choices: &[&str],
) -> Option<String> {
    if !value.is_string() {
        cx.error(
            field,
            format!(
                "expected one of {}, found {}",
                choices.join(", "),
                fields::show(value)
            ),
        );
        return None;
    }
    let s = scalar(cx, value, field)?;
    if choices.contains(&s.as_str()) {
        Some(s)
    } else {
        cx.error(field, format!("{s:?} is not one of {}", choices.join(", ")));
        None
    }
}

/// A non-negative integer at most `max`, written as a YAML number (a
/// string only when it is a number followed by a `// comment`).
pub(crate) fn uint(cx: &mut Cx<'_, '_>, value: &Value, field: &str, max: u64) -> Option<u64> {
    let n = match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|_| u64::MAX)),
        Value::String(s) if s.contains("//") => {
            scalar(cx, value, field).and_then(|s| s.parse::<u64>().ok())
        }
        _ => None,
    };
    match n {
        Some(n) if n <= max => Some(n),
        _ if value.as_i64().is_some_and(|n| n < 0) => {
            cx.error(
                field,
                format!("{} must not be negative", fields::show(value)),
            );
            None
        }
        Some(_) => {
            cx.error(field, format!("{} is more than {max}", fields::show(value)));
            None
        }
        None => {
            cx.error(
                field,
                format!("expected an integer 0-{max}, found {}", fields::show(value)),
            );
            None
        }
    }
}

/// A `u32` field.
pub(crate) fn u32_field(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<u32> {
    uint(cx, value, field, u64::from(u32::MAX)).map(|n| n as u32)
}

/// A `bool`.
pub(crate) fn boolean(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        other => {
            cx.error(
                field,
                format!("expected true or false, found {}", fields::show(other)),
            );
            None
        }
    }
}

/// A port number 1–65535.
pub(crate) fn port(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<u16> {
    fields::port(cx.rep, field, value)
}

/// `{number: N}` (a `PortSelector`).
pub(crate) fn port_selector(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<u16> {
    let mut number = None;
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "number" => number = port(cx, value, &at),
            other => cx.warn(
                &at,
                format!("{other:?} is not a port selector field; ignored"),
            ),
        }
    }
    number
}

/// A duration as Istio writes it: Go's `time.ParseDuration` syntax
/// (`3s`, `0.5s`, `100ms`, `1m`, `1h30m`). Istio requires at least 1ms
/// (`zero_ok`: or exactly 0, where 0 means "disabled") and millisecond
/// precision.
/// `google.protobuf.Duration`'s largest value, what Istio's API types
/// durations as.
const MAX_DURATION: Duration = Duration::from_secs(315_576_000_000);

pub(crate) fn duration(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    field: &str,
    zero_ok: bool,
) -> Option<Duration> {
    if !value.is_string() {
        cx.error(
            field,
            format!(
                "expected a duration such as \"3s\" or \"100ms\", found {}",
                fields::show(value)
            ),
        );
        return None;
    }
    let s = scalar(cx, value, field)?;
    let d = match parse_duration(&s) {
        Ok(d) => d,
        Err(why) => {
            cx.error(field, format!("{s:?} is not a duration ({why})"));
            return None;
        }
    };
    if d.is_zero() && zero_ok {
        return Some(d);
    }
    if d > MAX_DURATION {
        cx.error(
            field,
            format!("{s:?} is longer than a protobuf Duration can be (10 000 years)"),
        );
        return None;
    }
    if d < Duration::from_millis(1) {
        cx.error(field, format!("{s:?}: a duration must be at least 1ms"));
        None
    } else if d.subsec_nanos() % 1_000_000 != 0 {
        cx.error(
            field,
            format!("{s:?}: only durations to millisecond precision are supported"),
        );
        None
    } else {
        Some(d)
    }
}

/// Go's `time.ParseDuration` without negative values
/// (`mesh_admin::duration`'s Go syntax: no plain numbers of seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    mesh_admin::duration::parse(s).map_err(|error| error.to_string())
}

/// `{value: 0.1}` (a `Percent` message).
pub(crate) fn percentage(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<Percent> {
    let mut out = None;
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "value" => out = percent_value(cx, value, &at),
            other => cx.warn(&at, format!("{other:?} is not a Percent field; ignored")),
        }
    }
    out
}

fn percent_value(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<Percent> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.contains("//") => {
            scalar(cx, value, field).and_then(|s| s.parse::<f64>().ok())
        }
        _ => None,
    };
    let Some(n) = n else {
        cx.error(
            field,
            format!("expected a number 0-100, found {}", fields::show(value)),
        );
        return None;
    };
    let p = Percent::new(n);
    if p.is_none() {
        cx.error(field, format!("percentage {n} is not in range 0-100"));
    }
    p
}

/// An integer percentage 0–100 (`percent`, `maxEjectionPercent`).
pub(crate) fn int_percent(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<u32> {
    uint(cx, value, field, 100).map(|n| n as u32)
}

/// A `StringMatch`: exactly one of `exact`, `prefix`, `regex`; `{}` only
/// where `empty_ok` (header / query parameter presence). Regexes must
/// compile (RE2 syntax, as Envoy's).
pub(crate) fn string_match(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    field: &str,
    empty_ok: bool,
) -> Option<StringMatch> {
    let before = cx.count();
    let mut found = vec![];
    for (key, value, at) in entries(cx, value, field) {
        let m = match key {
            "exact" => text(cx, value, &at).map(StringMatch::Exact),
            "prefix" => text(cx, value, &at).map(StringMatch::Prefix),
            "regex" => regex(cx, value, &at).map(StringMatch::Regex),
            other => {
                cx.error(
                    &at,
                    format!("{other:?} is not a string match (exact, prefix or regex)"),
                );
                None
            }
        };
        found.extend(m);
    }
    if cx.count() != before {
        return None;
    }
    match found.len() {
        0 if empty_ok => Some(StringMatch::Present),
        0 => {
            cx.error(field, "needs one of exact, prefix or regex");
            None
        }
        1 => found.pop(),
        _ => {
            cx.error(field, "only one of exact, prefix or regex may be set");
            None
        }
    }
}

/// A non-empty regex that compiles within the program-size budget
/// ([`mesh_regex::PROGRAM_SIZE_LIMIT`]), as written and anchored (how a
/// full-match regex is compiled), so the waypoint accepts it too.
pub(crate) fn regex(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<String> {
    let s = text(cx, value, field)?;
    if s.is_empty() {
        cx.error(field, "a regex must not be empty");
        return None;
    }
    match super::regex_budget::check(&s) {
        Ok(()) => Some(s),
        Err(rejected) => {
            cx.error(field, rejected.to_string());
            None
        }
    }
}

/// `name → StringMatch` (`headers`, `queryParams`, `withoutHeaders`).
pub(crate) fn match_map(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    field: &str,
    header_names: bool,
) -> BTreeMap<String, StringMatch> {
    let mut out = BTreeMap::new();
    for (key, value, at) in entries(cx, value, field) {
        if header_names {
            header_name(cx, key, &at);
        }
        out.extend(string_match(cx, value, &at, true).map(|m| (key.to_string(), m)));
    }
    out
}

/// An HTTP header name: an RFC 7230 token (or a `:pseudo` header).
pub(crate) fn header_name(cx: &mut Cx<'_, '_>, name: &str, field: &str) -> bool {
    let token = name.strip_prefix(':').unwrap_or(name);
    let ok = !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c));
    if !ok {
        cx.error(field, format!("{name:?} is not a valid HTTP header name"));
    }
    ok
}

/// Labels (`sourceLabels`, subset `labels`): string values.
pub(crate) fn labels(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value, at) in entries(cx, value, field) {
        match value {
            Value::String(_) => {
                out.extend(scalar(cx, value, &at).map(|v| (key.to_string(), v)));
            }
            Value::Number(_) | Value::Bool(_) => cx.error(
                at,
                format!(
                    "expected a string, found {}; quote it: \"{}\"",
                    fields::type_name(value),
                    fields::show(value)
                ),
            ),
            other => cx.error(
                at,
                format!("expected a string, found {}", fields::type_name(other)),
            ),
        }
    }
    out
}

/// A `Destination`: `host` required (not `*`), `subset` a DNS-1123 label,
/// `port.number` a port.
pub(crate) fn destination(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<Destination> {
    let before = cx.count();
    let (mut host, mut subset, mut port) = (None, None, None);
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "host" => host = req_text(cx, value, &at),
            "subset" => {
                subset = req_text(cx, value, &at);
                if let Some(s) = &subset {
                    fields::check_name(cx.rep, &at, s, true);
                }
            }
            "port" => port = port_selector(cx, value, &at),
            other => cx.warn(
                &at,
                format!("{other:?} is not a destination field; ignored"),
            ),
        }
    }
    match &host {
        None if cx.count() == before => cx.error(join(field, "host"), "required field is missing"),
        Some(h) if h == "*" => cx.error(join(field, "host"), "a destination host cannot be \"*\""),
        Some(h) if h.chars().any(char::is_whitespace) => {
            cx.error(join(field, "host"), format!("{h:?} is not a host name"))
        }
        _ => {}
    }
    (cx.count() == before).then(|| Destination {
        host: host.unwrap_or_default(),
        subset,
        port,
    })
}

/// `headers{request, response}{set, add, remove}`.
pub(crate) fn headers(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Headers {
    let mut out = Headers::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "request" => out.request = header_operations(cx, value, &at),
            "response" => out.response = header_operations(cx, value, &at),
            other => cx.error(at, format!("{other:?} is not request or response")),
        }
    }
    out
}

fn header_operations(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> HeaderOperations {
    let mut out = HeaderOperations::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "set" | "add" => {
                let mut map = BTreeMap::new();
                for (name, value, at) in entries(cx, value, &at) {
                    header_name(cx, name, &at);
                    map.extend(text(cx, value, &at).map(|v| (name.to_string(), v)));
                }
                if key == "set" {
                    out.set = map;
                } else {
                    out.add = map;
                }
            }
            "remove" => {
                out.remove = strings(cx, value, &at);
                for (i, name) in out.remove.clone().iter().enumerate() {
                    header_name(cx, name, &format!("{at}[{i}]"));
                }
            }
            other => cx.error(at, format!("{other:?} is not set, add or remove")),
        }
    }
    out
}

#[cfg(test)]
mod tests;
