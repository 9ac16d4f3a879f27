//! Reading typed fields out of a YAML document while recording, for every
//! field that is wrong, a [`Problem`] naming the file, the resource and the
//! field path. Accessors never stop at the first problem, so one load
//! reports everything that is wrong with a resource.
use std::{collections::BTreeMap, net::IpAddr};

use serde_yaml::Value;

use super::error::Problem;
use crate::model::authz::IpBlock;

/// Collects the problems of one resource.
pub(crate) struct Reporter<'a> {
    pub file: &'a str,
    pub resource: String,
    pub problems: &'a mut Vec<Problem>,
}

impl Reporter<'_> {
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_string(),
            resource: self.resource.clone(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// Number of problems recorded so far (for all resources), to tell
    /// whether parsing one resource added any.
    pub fn count(&self) -> usize {
        self.problems.len()
    }
}

/// The value at a dotted path (`spec.mtls.mode`); an explicit `null` counts
/// as absent, as in Kubernetes.
pub(crate) fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut value = root;
    for key in path.split('.') {
        value = value.as_mapping()?.get(key)?;
    }
    (!value.is_null()).then_some(value)
}

/// How a value is called in messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A short rendering of a scalar for messages (`"10.0.0.x"`, `42`).
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => type_name(other).to_string(),
    }
}

/// An optional string field.
pub(crate) fn opt_str(rep: &mut Reporter<'_>, root: &Value, path: &str) -> Option<String> {
    let value = lookup(root, path)?;
    match value {
        Value::String(s) => Some(s.clone()),
        other => {
            rep.error(
                path,
                format!("expected a string, found {}", show_typed(other)),
            );
            None
        }
    }
}

/// A required, non-empty string field.
pub(crate) fn req_str(rep: &mut Reporter<'_>, root: &Value, path: &str) -> Option<String> {
    match lookup(root, path) {
        None => {
            rep.error(path, "required field is missing");
            None
        }
        Some(_) => match opt_str(rep, root, path) {
            Some(s) if s.is_empty() => {
                rep.error(path, "must not be empty");
                None
            }
            other => other,
        },
    }
}

/// A `string → string` mapping such as `metadata.labels`; absent is empty.
pub(crate) fn string_map(
    rep: &mut Reporter<'_>,
    root: &Value,
    path: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(value) = lookup(root, path) else {
        return out;
    };
    let Some(mapping) = value.as_mapping() else {
        rep.error(
            path,
            format!("expected a mapping, found {}", type_name(value)),
        );
        return out;
    };
    for (key, value) in mapping {
        let Some(key) = key.as_str() else {
            rep.error(path, format!("key {} is not a string", show(key)));
            continue;
        };
        match value {
            Value::String(s) => {
                out.insert(key.to_string(), s.clone());
            }
            // Kubernetes rejects these too; `version: 1.0` is the usual slip.
            Value::Number(_) | Value::Bool(_) => rep.error(
                format!("{path}.{key}"),
                format!(
                    "expected a string, found {}; quote it: \"{}\"",
                    show_typed(value),
                    show(value)
                ),
            ),
            other => rep.error(
                format!("{path}.{key}"),
                format!("expected a string, found {}", type_name(other)),
            ),
        }
    }
    out
}

/// An optional list field; absent is empty.
pub(crate) fn seq<'v>(rep: &mut Reporter<'_>, root: &'v Value, path: &str) -> &'v [Value] {
    match lookup(root, path) {
        None => &[],
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            rep.error(path, format!("expected a list, found {}", type_name(other)));
            &[]
        }
    }
}

/// An IP address given as a string.
pub(crate) fn ip(rep: &mut Reporter<'_>, field: &str, value: &Value) -> Option<IpAddr> {
    match value {
        Value::String(s) => match s.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                rep.error(field, format!("{s:?} is not an IP address"));
                None
            }
        },
        other => {
            rep.error(
                field,
                format!("expected an IP address string, found {}", show_typed(other)),
            );
            None
        }
    }
}

/// A TCP/UDP port number, 1–65535, given as an integer.
pub(crate) fn port(rep: &mut Reporter<'_>, field: &str, value: &Value) -> Option<u16> {
    match value.as_u64() {
        Some(n @ 1..=65535) => Some(n as u16),
        _ if value.is_number() => {
            rep.error(
                field,
                format!("{} is not a port number (1-65535)", show(value)),
            );
            None
        }
        _ => {
            rep.error(
                field,
                format!(
                    "expected a port number (1-65535), found {}",
                    show_typed(value)
                ),
            );
            None
        }
    }
}

/// A Kubernetes object name: a DNS-1123 subdomain (lowercase letters,
/// digits, `-`, `.`, at most 253 characters, alphanumeric at both ends);
/// with `label_only`, a DNS-1123 label (no dots, at most 63).
pub(crate) fn check_name(
    rep: &mut Reporter<'_>,
    field: &str,
    name: &str,
    label_only: bool,
) -> bool {
    let max = if label_only { 63 } else { 253 };
    let ok_char = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && !label_only)
    };
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid = !name.is_empty()
        && name.len() <= max
        && name.chars().all(ok_char)
        && ends(name.chars().next())
        && ends(name.chars().last());
    if !valid {
        let what = if label_only {
            "a DNS-1123 label: lowercase letters, digits and '-', at most 63"
        } else {
            "a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253"
        };
        rep.error(field, format!("{name:?} is not a valid name ({what})"));
    }
    valid
}

/// A list of non-empty strings; absent (null) is empty.
pub(crate) fn strings(rep: &mut Reporter<'_>, value: &Value, field: &str) -> Vec<String> {
    items(rep, value, field, |rep, item, at| match item {
        Value::String(s) if s.is_empty() => {
            rep.error(at, "must not be empty");
            None
        }
        Value::String(s) => Some(s.clone()),
        other => {
            rep.error(at, format!("expected a string, found {}", show(other)));
            None
        }
    })
}

/// A list of IP addresses or CIDRs (`10.0.0.0/8`, `fd00::1`).
pub(crate) fn blocks(rep: &mut Reporter<'_>, value: &Value, field: &str) -> Vec<IpBlock> {
    items(rep, value, field, |rep, item, at| match item {
        Value::String(s) => match parse_block(s) {
            Ok(block) => Some(block),
            Err(why) => {
                rep.error(at, format!("{s:?} is not an IP address or CIDR: {why}"));
                None
            }
        },
        other => {
            rep.error(
                at,
                format!(
                    "expected an IP address or CIDR string, found {}",
                    show(other)
                ),
            );
            None
        }
    })
}

/// A list of ports, written as strings (as Istio's API has them) or numbers.
pub(crate) fn ports(rep: &mut Reporter<'_>, value: &Value, field: &str) -> Vec<u16> {
    items(rep, value, field, |rep, item, at| match item {
        Value::String(s) => {
            match s.trim().parse::<u64>() {
                Ok(n @ 1..=65535) => Some(n as u16),
                Ok(n) => {
                    rep.error(at, format!("{n} is not a port number (1-65535)"));
                    None
                }
                Err(_) => {
                    rep.error(
                    at,
                    format!("{s:?} is not a port number (1-65535); named ports are not allowed here"),
                );
                    None
                }
            }
        }
        other => port(rep, at, other),
    })
}

fn items<T>(
    rep: &mut Reporter<'_>,
    value: &Value,
    field: &str,
    mut each: impl FnMut(&mut Reporter<'_>, &Value, &str) -> Option<T>,
) -> Vec<T> {
    match value {
        Value::Null => vec![],
        Value::Sequence(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, item)| each(rep, item, &format!("{field}[{i}]")))
            .collect(),
        other => {
            rep.error(
                field,
                format!("expected a list, found {}", type_name(other)),
            );
            vec![]
        }
    }
}

/// `10.0.0.0/8`, `fd00::/64`, or a bare address (a host block).
pub(crate) fn parse_block(text: &str) -> Result<IpBlock, String> {
    let text = text.trim();
    let (address, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let address: IpAddr = address
        .parse()
        .map_err(|_| format!("{address:?} is not an IP address"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("prefix length {l:?} is not 0-{max}")),
        },
    };
    Ok(IpBlock {
        address,
        prefix_len,
    })
}

fn show_typed(value: &Value) -> String {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            format!("{} ({})", type_name(value), show(value))
        }
        other => type_name(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn lookup_treats_null_as_absent() {
        let doc = yaml("a:\n  b: null\n  c: 1\n");
        assert!(lookup(&doc, "a.b").is_none());
        assert!(lookup(&doc, "a.c").is_some());
        assert!(lookup(&doc, "a.c.d").is_none());
    }

    #[test]
    fn problems_name_the_field() {
        let mut problems = vec![];
        let mut rep = Reporter {
            file: "f.yaml",
            resource: "Pod a/b".into(),
            problems: &mut problems,
        };
        let doc = yaml("metadata:\n  labels:\n    version: 1.0\n    ok: x\n  name: 7\n");
        let labels = string_map(&mut rep, &doc, "metadata.labels");
        assert_eq!(labels.len(), 1);
        assert!(opt_str(&mut rep, &doc, "metadata.name").is_none());
        assert!(port(&mut rep, "spec.ports[0].port", &yaml("70000")).is_none());
        assert!(ip(&mut rep, "status.podIP", &yaml("10.0.0.x")).is_none());
        assert!(!check_name(&mut rep, "metadata.name", "Bad_Name", false));
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "f.yaml: Pod a/b: metadata.labels.version: expected a string, found a number (1.0); quote it: \"1.0\"",
                "f.yaml: Pod a/b: metadata.name: expected a string, found a number (7)",
                "f.yaml: Pod a/b: spec.ports[0].port: 70000 is not a port number (1-65535)",
                "f.yaml: Pod a/b: status.podIP: \"10.0.0.x\" is not an IP address",
                "f.yaml: Pod a/b: metadata.name: \"Bad_Name\" is not a valid name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253)",
            ]
        );
    }
}
