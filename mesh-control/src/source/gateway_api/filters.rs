//! An HTTPRoute's `filters[]` (and a backendRef's): header modifiers,
//! redirects, rewrites, mirrors, each field checked and named.
use serde_yaml::Value;

use super::{
    super::routing::{self, Cx},
    http_route::{backend_ref, opt, port, req, Filter, PathModifier},
};
use crate::model::routing::{HeaderOperations, Percent};

/// A `filters[]` entry; `backend_level`: under a backendRef (header
/// modifiers only).
pub(super) fn filter(
    cx: &mut Cx<'_, '_>,
    f: &Value,
    at: &str,
    namespace: &str,
    backend_level: bool,
) -> Option<Filter> {
    let kinds: &[&str] = if backend_level {
        &["RequestHeaderModifier", "ResponseHeaderModifier"]
    } else {
        &[
            "RequestHeaderModifier",
            "ResponseHeaderModifier",
            "RequestRedirect",
            "URLRewrite",
            "RequestMirror",
        ]
    };
    let Some(kind_value) = f.get("type").filter(|v| !v.is_null()) else {
        cx.error(format!("{at}.type"), "required");
        return None;
    };
    let kind = routing::choice(cx, kind_value, &format!("{at}.type"), kinds)?;
    let body = |key: &str| -> Option<&Value> { f.get(key).filter(|v| !v.is_null()) };
    let missing = |cx: &mut Cx<'_, '_>, key: &str| {
        cx.error(format!("{at}.{key}"), format!("required for type {kind}"));
    };
    match kind.as_str() {
        "RequestHeaderModifier" | "ResponseHeaderModifier" => {
            let key = if kind == "RequestHeaderModifier" {
                "requestHeaderModifier"
            } else {
                "responseHeaderModifier"
            };
            let Some(b) = body(key) else {
                missing(cx, key);
                return None;
            };
            let ops = header_operations(cx, b, &format!("{at}.{key}"));
            Some(if kind == "RequestHeaderModifier" {
                Filter::RequestHeaders(ops)
            } else {
                Filter::ResponseHeaders(ops)
            })
        }
        "RequestRedirect" => {
            let Some(b) = body("requestRedirect") else {
                missing(cx, "requestRedirect");
                return None;
            };
            let b_at = format!("{at}.requestRedirect");
            let scheme = b.get("scheme").filter(|v| !v.is_null()).and_then(|v| {
                routing::choice(cx, v, &format!("{b_at}.scheme"), &["http", "https"])
            });
            let hostname = opt(cx, b, "hostname", &b_at);
            let path = path_modifier(cx, b, &b_at);
            let port = port(cx, b, &b_at);
            let status = match b.get("statusCode").filter(|v| !v.is_null()) {
                None => 302,
                Some(v) => match routing::uint(cx, v, &format!("{b_at}.statusCode"), 999) {
                    Some(code @ (301 | 302)) => code as u16,
                    Some(other) => {
                        cx.error(
                            format!("{b_at}.statusCode"),
                            format!("{other} is not 301 or 302"),
                        );
                        302
                    }
                    None => 302,
                },
            };
            Some(Filter::Redirect {
                scheme,
                hostname,
                path,
                port,
                status,
            })
        }
        "URLRewrite" => {
            let Some(b) = body("urlRewrite") else {
                missing(cx, "urlRewrite");
                return None;
            };
            let b_at = format!("{at}.urlRewrite");
            Some(Filter::Rewrite {
                hostname: opt(cx, b, "hostname", &b_at),
                path: path_modifier(cx, b, &b_at),
            })
        }
        _ => {
            let Some(b) = body("requestMirror") else {
                missing(cx, "requestMirror");
                return None;
            };
            let b_at = format!("{at}.requestMirror");
            let Some(r) = b.get("backendRef").filter(|v| !v.is_null()) else {
                cx.error(format!("{b_at}.backendRef"), "required");
                return None;
            };
            let backend = backend_ref(cx, r, &format!("{b_at}.backendRef"), namespace, false)?;
            let percent = mirror_percent(cx, b, &b_at);
            Some(Filter::Mirror { backend, percent })
        }
    }
}

/// `percent` (0–100) or `fraction{numerator, denominator}`.
fn mirror_percent(cx: &mut Cx<'_, '_>, b: &Value, at: &str) -> Option<Percent> {
    let percent = b
        .get("percent")
        .filter(|v| !v.is_null())
        .and_then(|v| routing::uint(cx, v, &format!("{at}.percent"), 100))
        .and_then(|p| Percent::new(p as f64));
    let fraction = b.get("fraction").filter(|v| !v.is_null()).and_then(|f| {
        let f_at = format!("{at}.fraction");
        let numerator = match f.get("numerator") {
            Some(v) => routing::u32_field(cx, v, &format!("{f_at}.numerator")),
            None => {
                cx.error(format!("{f_at}.numerator"), "required");
                None
            }
        }?;
        let denominator = match f.get("denominator").filter(|v| !v.is_null()) {
            None => 100,
            Some(v) => routing::u32_field(cx, v, &format!("{f_at}.denominator"))?,
        };
        if denominator == 0 || numerator > denominator {
            cx.error(
                f_at,
                "numerator must not exceed denominator, and denominator must be above 0",
            );
            return None;
        }
        Percent::new(f64::from(numerator) * 100.0 / f64::from(denominator))
    });
    if percent.is_some() && fraction.is_some() {
        cx.error(at, "only one of percent and fraction");
    }
    percent.or(fraction)
}

fn path_modifier(cx: &mut Cx<'_, '_>, b: &Value, at: &str) -> Option<PathModifier> {
    let p = b.get("path").filter(|v| !v.is_null())?;
    let p_at = format!("{at}.path");
    let kind = match p.get("type") {
        Some(v) => routing::choice(
            cx,
            v,
            &format!("{p_at}.type"),
            &["ReplaceFullPath", "ReplacePrefixMatch"],
        )?,
        None => {
            cx.error(format!("{p_at}.type"), "required");
            return None;
        }
    };
    let key = if kind == "ReplaceFullPath" {
        "replaceFullPath"
    } else {
        "replacePrefixMatch"
    };
    let value = match p.get(key).filter(|v| !v.is_null()) {
        Some(v) => routing::text(cx, v, &format!("{p_at}.{key}"))?,
        None => {
            cx.error(format!("{p_at}.{key}"), format!("required for type {kind}"));
            return None;
        }
    };
    if !value.starts_with('/') {
        cx.error(
            format!("{p_at}.{key}"),
            format!("{value:?}: a path starts with \"/\""),
        );
        return None;
    }
    Some(if kind == "ReplaceFullPath" {
        PathModifier::ReplaceFullPath(value)
    } else {
        PathModifier::ReplacePrefixMatch(value)
    })
}

/// `set[]` / `add[]` `{name, value}`, `remove[]` names.
fn header_operations(cx: &mut Cx<'_, '_>, b: &Value, at: &str) -> HeaderOperations {
    let mut ops = HeaderOperations::default();
    for key in ["set", "add"] {
        let list_at = format!("{at}.{key}");
        for (h, h_at) in routing::list(cx, b.get(key).unwrap_or(&Value::Null), &list_at) {
            let Some(name) = req(cx, h, "name", &h_at) else {
                continue;
            };
            if !routing::header_name(cx, &name, &format!("{h_at}.name")) {
                continue;
            }
            let value = match h.get("value") {
                Some(v) => routing::text(cx, v, &format!("{h_at}.value")),
                None => {
                    cx.error(format!("{h_at}.value"), "required");
                    None
                }
            };
            if let Some(value) = value {
                let target = if key == "set" {
                    &mut ops.set
                } else {
                    &mut ops.add
                };
                target.entry(name.to_ascii_lowercase()).or_insert(value);
            }
        }
    }
    let remove_at = format!("{at}.remove");
    for (h, h_at) in routing::list(cx, b.get("remove").unwrap_or(&Value::Null), &remove_at) {
        if let Some(name) = routing::req_text(cx, h, &h_at) {
            if routing::header_name(cx, &name, &h_at) {
                ops.remove.push(name.to_ascii_lowercase());
            }
        }
    }
    ops
}
