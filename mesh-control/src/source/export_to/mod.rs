//! `spec.exportTo` of VirtualService, DestinationRule and ServiceEntry,
//! validated as istiod's webhook validates it: each entry is `.`, `*`,
//! `~` or a namespace name (a DNS-1123 label), none twice (`.` and the
//! resource's own namespace count as the same), and `*` or `~` only
//! alone. istiod accepts `~` on ServiceEntries only; it is accepted on
//! every kind here and means no namespace ([`crate::model::visibility`]).
use serde_yaml::Value;

use super::fields::{self, Reporter};
use crate::model::visibility::{NONE, PRIVATE, PUBLIC};

/// The entries of the `exportTo` list `value` (at `field`) of a resource
/// in `namespace`; every problem is reported.
pub(crate) fn export_to(
    rep: &mut Reporter<'_>,
    value: &Value,
    field: &str,
    namespace: &str,
) -> Vec<String> {
    let entries = fields::strings(rep, value, field);
    // (namespace named, entry as written)
    let mut seen: Vec<(&str, &str)> = vec![];
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let special = [PRIVATE, PUBLIC, NONE].contains(&entry.as_str());
        if !special && !is_label(entry) {
            rep.error(
                &at,
                format!(
                    "{entry:?} is not \".\", \"*\", \"~\" or a namespace name (a DNS-1123 label)"
                ),
            );
            continue;
        }
        let key = if entry == PRIVATE { namespace } else { entry };
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            let message = if first == entry {
                format!("{entry:?} is listed twice")
            } else {
                format!("\".\" and {namespace:?} both name this resource's namespace")
            };
            rep.error(&at, message);
        }
        seen.push((key, entry));
    }
    if entries.len() > 1 {
        for alone in [PUBLIC, NONE] {
            if entries.iter().any(|e| e == alone) {
                rep.error(
                    field,
                    format!("{alone:?} cannot be combined with other entries"),
                );
            }
        }
    }
    entries
}

/// True when `export_to` names no namespace but the resource's own (what
/// a DestinationRule with a `workloadSelector` may name).
pub(crate) fn own_namespace_only(export_to: &[String], namespace: &str) -> bool {
    !export_to.is_empty() && export_to.iter().all(|e| e == PRIVATE || e == namespace)
}

fn is_label(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && edge(s.chars().next())
        && edge(s.chars().last())
}

#[cfg(test)]
mod tests;
