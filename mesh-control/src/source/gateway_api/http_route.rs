//! `HTTPRoute` (`gateway.networking.k8s.io/v1`, `v1beta1`), read into
//! typed form and checked field by field as the Gateway API's CRD
//! validation does (`spec.rules[0].backendRefs[1].port: required`).
//! Whether its parents and backends exist is [`super::resolve`]'s
//! business: those become status conditions, not problems.
use std::time::Duration;

use serde_yaml::Value;

use super::{
    super::{
        objects::Origin,
        routing::{self, Cx},
    },
    gateway::check_hostname,
    Meta,
};
use crate::model::routing::{HeaderOperations, Percent};

const VERSIONS: &[&str] = &["v1", "v1beta1"];

/// A `parentRefs[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRef {
    /// `gateway.networking.k8s.io` (default) or `""` (core, a Service).
    pub group: String,
    /// `Gateway` (default) or `Service`.
    pub kind: String,
    /// Absent in the YAML: the route's.
    pub namespace: String,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<u16>,
}

impl ParentRef {
    /// True for a Gateway parent (an ingress listener), false for a
    /// Service (the mesh) or another kind.
    pub fn is_gateway(&self) -> bool {
        self.group == super::GROUP && self.kind == "Gateway"
    }

    pub fn is_service(&self) -> bool {
        self.group.is_empty() && self.kind == "Service"
    }
}

/// `path` of a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathMatch {
    Exact(String),
    /// Segment-wise prefix, trailing `/` removed (`/` itself kept).
    Prefix(String),
    Regex(String),
}

/// A header / query parameter value match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueMatch {
    Exact(String),
    Regex(String),
}

/// One `matches[]` entry (absent: `PathPrefix /`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Match {
    pub path: PathMatch,
    /// Header names lower-cased; a repeated name keeps the first.
    pub headers: Vec<(String, ValueMatch)>,
    pub query_params: Vec<(String, ValueMatch)>,
    pub method: Option<String>,
}

impl Default for Match {
    fn default() -> Self {
        Self {
            path: PathMatch::Prefix("/".into()),
            headers: vec![],
            query_params: vec![],
            method: None,
        }
    }
}

/// `path` of a redirect or rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathModifier {
    ReplaceFullPath(String),
    ReplacePrefixMatch(String),
}

/// A `filters[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    RequestHeaders(HeaderOperations),
    ResponseHeaders(HeaderOperations),
    Redirect {
        scheme: Option<String>,
        hostname: Option<String>,
        path: Option<PathModifier>,
        port: Option<u16>,
        /// 301 or 302 (default 302).
        status: u16,
    },
    Rewrite {
        hostname: Option<String>,
        path: Option<PathModifier>,
    },
    Mirror {
        backend: BackendRef,
        percent: Option<Percent>,
    },
}

/// A `backendRefs[]` entry (or a mirror's `backendRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    /// Absent in the YAML: the route's.
    pub namespace: String,
    pub port: Option<u16>,
    /// Default 1.
    pub weight: u32,
    /// Header modifiers only.
    pub filters: Vec<Filter>,
    /// `spec.rules[0].backendRefs[1]`.
    pub field: String,
}

impl BackendRef {
    pub fn is_service(&self) -> bool {
        self.group.is_empty() && self.kind == "Service"
    }
}

/// One `rules[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// Never empty (absent: one default match).
    pub matches: Vec<Match>,
    pub filters: Vec<Filter>,
    pub backends: Vec<BackendRef>,
    pub request_timeout: Option<Duration>,
    pub backend_request_timeout: Option<Duration>,
}

/// An HTTPRoute as read.
#[derive(Debug, Clone)]
pub(crate) struct HttpRouteObj {
    pub name: String,
    pub namespace: String,
    pub origin: Origin,
    pub meta: Meta,
    pub parents: Vec<ParentRef>,
    pub hostnames: Vec<String>,
    pub rules: Vec<Rule>,
}

/// Reads the HTTPRoute in `value`; `None` when it has a problem.
pub(crate) fn read(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    version: &str,
    name: &str,
    namespace: &str,
    origin: &Origin,
    meta: Meta,
) -> Option<HttpRouteObj> {
    let before = cx.count();
    if !VERSIONS.contains(&version) {
        cx.error(
            "apiVersion",
            format!("gateway.networking.k8s.io/{version} is not an HTTPRoute version the mesh reads (use gateway.networking.k8s.io/v1 or v1beta1)"),
        );
        return None;
    }
    let spec = value.get("spec").unwrap_or(&Value::Null);
    let get = |key: &str| spec.get(key).unwrap_or(&Value::Null);
    let mut parents = vec![];
    for (p, at) in routing::list(cx, get("parentRefs"), "spec.parentRefs") {
        parents.extend(parent_ref(cx, p, &at, namespace));
    }
    let mut hostnames = vec![];
    for (h, at) in routing::list(cx, get("hostnames"), "spec.hostnames") {
        if let Some(h) = routing::req_text(cx, h, &at) {
            if check_hostname(cx, &h, &at) {
                hostnames.push(h);
            }
        }
    }
    let mut rules = vec![];
    for (r, at) in routing::list(cx, get("rules"), "spec.rules") {
        rules.extend(rule(cx, r, &at, namespace));
    }
    if rules.is_empty() && cx.count() == before {
        // The CRD defaults rules to one catch-all rule without backends.
        rules.push(Rule {
            matches: vec![Match::default()],
            filters: vec![],
            backends: vec![],
            request_timeout: None,
            backend_request_timeout: None,
        });
    }
    (cx.count() == before).then(|| HttpRouteObj {
        name: name.to_string(),
        namespace: namespace.to_string(),
        origin: origin.clone(),
        meta,
        parents,
        hostnames,
        rules,
    })
}

/// An optional string field `key` of `item` (non-empty when present).
pub(super) fn opt(cx: &mut Cx<'_, '_>, item: &Value, key: &str, at: &str) -> Option<String> {
    item.get(key)
        .filter(|v| !v.is_null())
        .and_then(|v| routing::req_text(cx, v, &format!("{at}.{key}")))
}

/// A required non-empty string field `key` of `item`.
pub(super) fn req(cx: &mut Cx<'_, '_>, item: &Value, key: &str, at: &str) -> Option<String> {
    if item.get(key).is_none_or(Value::is_null) {
        cx.error(format!("{at}.{key}"), "required");
        return None;
    }
    opt(cx, item, key, at)
}

/// `group` (may be empty: the core API) with its default.
fn group(cx: &mut Cx<'_, '_>, item: &Value, at: &str, default: &str) -> String {
    match item.get("group").filter(|v| !v.is_null()) {
        None => default.to_string(),
        Some(v) => routing::text(cx, v, &format!("{at}.group")).unwrap_or_default(),
    }
}

pub(super) fn port(cx: &mut Cx<'_, '_>, item: &Value, at: &str) -> Option<u16> {
    item.get("port")
        .filter(|v| !v.is_null())
        .and_then(|v| routing::port(cx, v, &format!("{at}.port")))
}

fn parent_ref(cx: &mut Cx<'_, '_>, p: &Value, at: &str, namespace: &str) -> Option<ParentRef> {
    let before = cx.count();
    let group = group(cx, p, at, super::GROUP);
    let kind = opt(cx, p, "kind", at).unwrap_or_else(|| "Gateway".into());
    let name = req(cx, p, "name", at);
    let ns = opt(cx, p, "namespace", at).unwrap_or_else(|| namespace.to_string());
    let section_name = opt(cx, p, "sectionName", at);
    let port = port(cx, p, at);
    (cx.count() == before).then_some(ParentRef {
        group,
        kind,
        namespace: ns,
        name: name?,
        section_name,
        port,
    })
}

fn rule(cx: &mut Cx<'_, '_>, r: &Value, at: &str, namespace: &str) -> Option<Rule> {
    let before = cx.count();
    let get = |key: &str| r.get(key).unwrap_or(&Value::Null);
    let mut matches = vec![];
    for (m, m_at) in routing::list(cx, get("matches"), &format!("{at}.matches")) {
        matches.extend(http_match(cx, m, &m_at));
    }
    if matches.is_empty() {
        matches.push(Match::default());
    }
    let mut filters = vec![];
    for (f, f_at) in routing::list(cx, get("filters"), &format!("{at}.filters")) {
        filters.extend(super::filters::filter(cx, f, &f_at, namespace, false));
    }
    let redirects = filters
        .iter()
        .filter(|f| matches!(f, Filter::Redirect { .. }))
        .count();
    let rewrites = filters
        .iter()
        .filter(|f| matches!(f, Filter::Rewrite { .. }))
        .count();
    if redirects > 1 || rewrites > 1 || (redirects == 1 && rewrites == 1) {
        cx.error(
            format!("{at}.filters"),
            "at most one RequestRedirect or one URLRewrite per rule, not both",
        );
    }
    let mut backends = vec![];
    for (b, b_at) in routing::list(cx, get("backendRefs"), &format!("{at}.backendRefs")) {
        backends.extend(backend_ref(cx, b, &b_at, namespace, true));
    }
    if redirects > 0 && !backends.is_empty() {
        cx.error(
            format!("{at}.backendRefs"),
            "a rule with a RequestRedirect filter has no backendRefs",
        );
    }
    // ReplacePrefixMatch needs a PathPrefix match (Gateway API's rule).
    let prefix_modifier = filters.iter().any(|f| {
        matches!(
            f,
            Filter::Redirect {
                path: Some(PathModifier::ReplacePrefixMatch(_)),
                ..
            } | Filter::Rewrite {
                path: Some(PathModifier::ReplacePrefixMatch(_)),
                ..
            }
        )
    });
    if prefix_modifier
        && matches
            .iter()
            .any(|m| !matches!(m.path, PathMatch::Prefix(_)))
    {
        cx.error(
            format!("{at}.filters"),
            "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match",
        );
    }
    let timeouts = get("timeouts");
    let t_at = format!("{at}.timeouts");
    let request_timeout = timeouts
        .get("request")
        .filter(|v| !v.is_null())
        .and_then(|v| routing::duration(cx, v, &format!("{t_at}.request"), true));
    let backend_request_timeout = timeouts
        .get("backendRequest")
        .filter(|v| !v.is_null())
        .and_then(|v| routing::duration(cx, v, &format!("{t_at}.backendRequest"), true));
    if let (Some(req), Some(backend)) = (request_timeout, backend_request_timeout) {
        if !req.is_zero() && (backend.is_zero() || backend > req) {
            cx.error(
                format!("{t_at}.backendRequest"),
                "must not be longer than timeouts.request",
            );
        }
    }
    (cx.count() == before).then_some(Rule {
        matches,
        filters,
        backends,
        request_timeout,
        backend_request_timeout,
    })
}

fn http_match(cx: &mut Cx<'_, '_>, m: &Value, at: &str) -> Option<Match> {
    let before = cx.count();
    let mut out = Match::default();
    if let Some(path) = m.get("path").filter(|v| !v.is_null()) {
        let p_at = format!("{at}.path");
        let kind = match path.get("type").filter(|v| !v.is_null()) {
            None => Some("PathPrefix".to_string()),
            Some(v) => routing::choice(
                cx,
                v,
                &format!("{p_at}.type"),
                &["Exact", "PathPrefix", "RegularExpression"],
            ),
        };
        let value = match path.get("value").filter(|v| !v.is_null()) {
            None => Some("/".to_string()),
            Some(v) => routing::req_text(cx, v, &format!("{p_at}.value")),
        };
        if let (Some(kind), Some(value)) = (kind, value) {
            let v_at = format!("{p_at}.value");
            out.path = match kind.as_str() {
                "RegularExpression" => {
                    PathMatch::Regex(routing::regex(cx, &Value::String(value), &v_at)?)
                }
                _ if !value.starts_with('/') => {
                    cx.error(v_at, format!("{value:?}: a path starts with \"/\""));
                    return None;
                }
                "Exact" => PathMatch::Exact(value),
                _ => {
                    let trimmed = value.trim_end_matches('/');
                    PathMatch::Prefix(if trimmed.is_empty() {
                        "/".into()
                    } else {
                        trimmed.to_string()
                    })
                }
            };
        }
    }
    out.headers = value_matches(cx, m, "headers", at, true);
    out.query_params = value_matches(cx, m, "queryParams", at, false);
    if let Some(method) = m.get("method").filter(|v| !v.is_null()) {
        out.method = routing::choice(
            cx,
            method,
            &format!("{at}.method"),
            &[
                "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
            ],
        );
    }
    (cx.count() == before).then_some(out)
}

fn value_matches(
    cx: &mut Cx<'_, '_>,
    m: &Value,
    key: &str,
    at: &str,
    header: bool,
) -> Vec<(String, ValueMatch)> {
    let mut out: Vec<(String, ValueMatch)> = vec![];
    let list_at = format!("{at}.{key}");
    for (h, h_at) in routing::list(cx, m.get(key).unwrap_or(&Value::Null), &list_at) {
        let Some(name) = req(cx, h, "name", &h_at) else {
            continue;
        };
        if header && !routing::header_name(cx, &name, &format!("{h_at}.name")) {
            continue;
        }
        let name = if header {
            name.to_ascii_lowercase()
        } else {
            name
        };
        let Some(value) = h
            .get("value")
            .filter(|v| !v.is_null())
            .and_then(|v| routing::text(cx, v, &format!("{h_at}.value")))
        else {
            if h.get("value").is_none_or(Value::is_null) {
                cx.error(format!("{h_at}.value"), "required");
            }
            continue;
        };
        let kind = match h.get("type").filter(|v| !v.is_null()) {
            None => "Exact".to_string(),
            Some(v) => match routing::choice(
                cx,
                v,
                &format!("{h_at}.type"),
                &["Exact", "RegularExpression"],
            ) {
                Some(k) => k,
                None => continue,
            },
        };
        let matched = if kind == "Exact" {
            ValueMatch::Exact(value)
        } else {
            match routing::regex(cx, &Value::String(value), &format!("{h_at}.value")) {
                Some(re) => ValueMatch::Regex(re),
                None => continue,
            }
        };
        // Gateway API: the first entry of a repeated name wins.
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, matched));
        }
    }
    out
}

/// A backendRef; `weighted`: a route's (weight and filters allowed), not
/// a mirror's.
pub(super) fn backend_ref(
    cx: &mut Cx<'_, '_>,
    b: &Value,
    at: &str,
    namespace: &str,
    weighted: bool,
) -> Option<BackendRef> {
    let before = cx.count();
    let group = group(cx, b, at, "");
    let kind = opt(cx, b, "kind", at).unwrap_or_else(|| "Service".into());
    let name = req(cx, b, "name", at);
    let ns = opt(cx, b, "namespace", at).unwrap_or_else(|| namespace.to_string());
    let port = port(cx, b, at);
    if port.is_none() && group.is_empty() && kind == "Service" && b.get("port").is_none() {
        cx.error(
            format!("{at}.port"),
            "required (a Service backend names its port)",
        );
    }
    let weight = match b.get("weight").filter(|v| !v.is_null()) {
        Some(v) if weighted => {
            routing::uint(cx, v, &format!("{at}.weight"), 1_000_000).map_or(1, |w| w as u32)
        }
        _ => 1,
    };
    let mut filters = vec![];
    if weighted {
        for (f, f_at) in routing::list(
            cx,
            b.get("filters").unwrap_or(&Value::Null),
            &format!("{at}.filters"),
        ) {
            filters.extend(super::filters::filter(cx, f, &f_at, namespace, true));
        }
    }
    (cx.count() == before).then(|| BackendRef {
        group,
        kind,
        name: name.unwrap_or_default(),
        namespace: ns,
        port,
        weight,
        filters,
        field: at.to_string(),
    })
}
