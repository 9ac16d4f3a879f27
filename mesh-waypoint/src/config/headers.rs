//! Header edits (`*_headers_to_add` / `*_headers_to_remove`), applied as
//! Envoy does: removals first, then additions by their `append_action`.
use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValueOption,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{at, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD` (Istio's `add`).
    Append,
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD` (Istio's `set`).
    Overwrite,
    OverwriteIfExists,
}

#[derive(Debug, Clone)]
pub struct HeaderAdd {
    pub name: HeaderName,
    pub value: HeaderValue,
    pub action: AppendAction,
}

/// One set of edits (route, virtual host, route config or weighted target).
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub add: Vec<HeaderAdd>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    pub fn compile(
        add: &[HeaderValueOption],
        remove: &[String],
        add_field: &str,
        remove_field: &str,
    ) -> Result<Self, ConfigError> {
        let mut edits = HeaderEdits::default();
        for (i, r) in remove.iter().enumerate() {
            let name = HeaderName::from_bytes(r.as_bytes()).map_err(|_| {
                ConfigError::new(
                    format!("{remove_field}[{i}]"),
                    format!("bad header name {r:?}"),
                )
            })?;
            edits.remove.push(name);
        }
        for (i, o) in add.iter().enumerate() {
            let field = format!("{add_field}[{i}]");
            let Some(h) = &o.header else {
                return Err(ConfigError::new(at(&field, "header"), "missing"));
            };
            let name = HeaderName::from_bytes(h.key.as_bytes()).map_err(|_| {
                ConfigError::new(
                    at(&field, "header.key"),
                    format!("bad header name {:?}", h.key),
                )
            })?;
            let raw = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                h.raw_value.as_slice()
            };
            let value = HeaderValue::from_bytes(raw).map_err(|_| {
                ConfigError::new(
                    at(&field, "header.value"),
                    "value is not a valid header value",
                )
            })?;
            // The deprecated `append` wins when set, as in Envoy.
            #[allow(deprecated)]
            let append = o.append;
            let action = match append {
                Some(b) if b.value => AppendAction::Append,
                Some(_) => AppendAction::Overwrite,
                None => match HeaderAppendAction::try_from(o.append_action) {
                    Ok(HeaderAppendAction::AppendIfExistsOrAdd) => AppendAction::Append,
                    Ok(HeaderAppendAction::AddIfAbsent) => AppendAction::AddIfAbsent,
                    Ok(HeaderAppendAction::OverwriteIfExistsOrAdd) => AppendAction::Overwrite,
                    Ok(HeaderAppendAction::OverwriteIfExists) => AppendAction::OverwriteIfExists,
                    Err(_) => {
                        return Err(ConfigError::new(
                            at(&field, "append_action"),
                            format!("unknown action {}", o.append_action),
                        ))
                    }
                },
            };
            edits.add.push(HeaderAdd {
                name,
                value,
                action,
            });
        }
        Ok(edits)
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for a in &self.add {
            match a.action {
                AppendAction::Append => {
                    headers.append(a.name.clone(), a.value.clone());
                }
                AppendAction::AddIfAbsent => {
                    if !headers.contains_key(&a.name) {
                        headers.insert(a.name.clone(), a.value.clone());
                    }
                }
                AppendAction::Overwrite => {
                    headers.insert(a.name.clone(), a.value.clone());
                }
                AppendAction::OverwriteIfExists => {
                    if headers.contains_key(&a.name) {
                        headers.insert(a.name.clone(), a.value.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderValue as PbHeaderValue;

    fn opt(k: &str, v: &str, action: HeaderAppendAction) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(PbHeaderValue {
                key: k.into(),
                value: v.into(),
                raw_value: vec![],
            }),
            append_action: action as i32,
            ..Default::default()
        }
    }

    #[test]
    fn remove_then_set_and_add() {
        let edits = HeaderEdits::compile(
            &[
                opt("x-set", "new", HeaderAppendAction::OverwriteIfExistsOrAdd),
                opt("x-add", "two", HeaderAppendAction::AppendIfExistsOrAdd),
                opt("x-absent", "no", HeaderAppendAction::OverwriteIfExists),
            ],
            &["x-gone".into()],
            "request_headers_to_add",
            "request_headers_to_remove",
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-set", "old".parse().unwrap());
        h.insert("x-add", "one".parse().unwrap());
        h.insert("x-gone", "bye".parse().unwrap());
        edits.apply(&mut h);
        assert_eq!(h["x-set"], "new");
        let adds: Vec<_> = h.get_all("x-add").iter().collect();
        assert_eq!(adds, ["one", "two"]);
        assert!(!h.contains_key("x-gone"));
        assert!(!h.contains_key("x-absent"));
    }

    #[test]
    fn bad_name_is_named() {
        let err = HeaderEdits::compile(
            &[opt(
                "bad name",
                "v",
                HeaderAppendAction::AppendIfExistsOrAdd,
            )],
            &[],
            "routes[0].request_headers_to_add",
            "r",
        )
        .unwrap_err();
        assert_eq!(err.field, "routes[0].request_headers_to_add[0].header.key");
    }
}
