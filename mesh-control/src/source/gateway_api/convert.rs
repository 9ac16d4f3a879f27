//! One HTTPRoute rule match → VirtualService `http[]` entries, as istiod
//! converts them:
//!
//! - `PathPrefix /p` is segment-wise: `exact /p` or `prefix /p/`
//!   (a VirtualService prefix is not); `/` stays `prefix /`;
//! - `ReplacePrefixMatch` R splits the entry in two: `exact /p` rewritten
//!   (or redirected) to R, `prefix /p/` to R with a trailing `/`;
//! - `ReplaceFullPath` R: a redirect to R, or `uriRegexRewrite {/.*, R}`;
//! - backends with weight 0 are dropped; backends that do not resolve keep
//!   their share and name a cluster that does not exist (the proxy answers
//!   503 for it: Gateway API asks for 500, which Envoy cannot send for a
//!   share of a weighted split); a rule whose backends all fail, or have
//!   no weight, or that has none, answers 500 (`directResponse`);
//! - `timeouts.request` is the route timeout, `backendRequest` the
//!   per-try timeout (with Istio's default of 2 attempts).
use std::collections::BTreeMap;

use serde_yaml::Value;

use super::http_route::{
    BackendRef, Filter, HttpRouteObj, Match, PathMatch, PathModifier, Rule, ValueMatch,
};
use crate::model::routing::{
    Destination, Headers, HttpMatch, HttpRoute, HttpRouteDestination, Redirect, Retries, Rewrite,
    StringMatch,
};

/// Istio's default number of retries, kept when only a per-try timeout is set.
const DEFAULT_ATTEMPTS: u32 = 2;

/// Where the converted entries apply.
pub(crate) struct At<'a> {
    /// `<ns>/<name>` of the Istio Gateway (ingress), or `mesh`.
    pub gateway: &'a str,
    /// The listener's port (ingress) or the parentRef's (mesh).
    pub port: Option<u16>,
    pub cluster_domain: &'a str,
}

/// The Gateway API precedence of a match, larger first: exact path, then
/// prefix, then regex; longer path; a method; more headers; more query
/// parameters.
pub(crate) fn precedence(m: &Match) -> (u8, usize, bool, usize, usize) {
    let (rank, len) = match &m.path {
        PathMatch::Exact(p) => (3, p.len()),
        PathMatch::Prefix(p) => (2, p.len()),
        PathMatch::Regex(r) => (1, r.len()),
    };
    (
        rank,
        len,
        m.method.is_some(),
        m.headers.len(),
        m.query_params.len(),
    )
}

/// `<name>.<namespace>.svc.<domain>`.
pub(crate) fn service_host(name: &str, namespace: &str, domain: &str) -> String {
    format!("{name}.{namespace}.svc.{domain}")
}

fn value_match(v: &ValueMatch) -> StringMatch {
    match v {
        ValueMatch::Exact(s) => StringMatch::Exact(s.clone()),
        ValueMatch::Regex(s) => StringMatch::Regex(s.clone()),
    }
}

fn base_match(m: &Match, at: &At<'_>, uri: StringMatch) -> HttpMatch {
    HttpMatch {
        uri: Some(uri),
        method: m.method.clone().map(StringMatch::Exact),
        headers: m
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), value_match(v)))
            .collect(),
        query_params: m
            .query_params
            .iter()
            .map(|(k, v)| (k.clone(), value_match(v)))
            .collect(),
        port: at.port,
        gateways: vec![at.gateway.to_string()],
        ..HttpMatch::default()
    }
}

/// `R` with exactly one trailing `/`.
fn with_slash(r: &str) -> String {
    format!("{}/", r.trim_end_matches('/'))
}

/// The entries for match `mi` of rule `ri` of `route`; `resolved[j]` says
/// whether backend `j` resolves, `mirrors_resolved` likewise per mirror
/// filter (in filter order).
pub(crate) fn http_routes(
    route: &HttpRouteObj,
    ri: usize,
    mi: usize,
    resolved: &[bool],
    mirrors_resolved: &[bool],
    at: &At<'_>,
) -> Vec<HttpRoute> {
    let rule = &route.rules[ri];
    let m = &rule.matches[mi];
    let name = format!("{}.{}.{ri}.{mi}", route.namespace, route.name);
    let prefix_modifier = rule.filters.iter().find_map(|f| match f {
        Filter::Redirect {
            path: Some(PathModifier::ReplacePrefixMatch(r)),
            ..
        }
        | Filter::Rewrite {
            path: Some(PathModifier::ReplacePrefixMatch(r)),
            ..
        } => Some(r.clone()),
        _ => None,
    });
    match (&m.path, prefix_modifier) {
        (PathMatch::Prefix(p), Some(r)) if p != "/" => {
            // Two entries: the path itself, and below it.
            let mut exact = entry(rule, resolved, mirrors_resolved, at, Some(&r));
            exact.name = Some(format!("{name}.exact"));
            // The whole path is replaced: a plain path redirect.
            if let Some(r) = &mut exact.redirect {
                r.uri = r.uri_prefix.take().or(r.uri.take());
            }
            exact.matches = vec![base_match(m, at, StringMatch::Exact(p.clone()))];
            let mut below = entry(rule, resolved, mirrors_resolved, at, Some(&with_slash(&r)));
            below.name = Some(format!("{name}.prefix"));
            below.matches = vec![base_match(m, at, StringMatch::Prefix(with_slash(p)))];
            vec![exact, below]
        }
        (path, prefix) => {
            let prefix = prefix.map(|r| with_slash(&r));
            let mut one = entry(rule, resolved, mirrors_resolved, at, prefix.as_deref());
            one.name = Some(name);
            one.matches = match path {
                PathMatch::Exact(p) => vec![base_match(m, at, StringMatch::Exact(p.clone()))],
                PathMatch::Regex(r) => vec![base_match(m, at, StringMatch::Regex(r.clone()))],
                PathMatch::Prefix(p) if p == "/" => {
                    vec![base_match(m, at, StringMatch::Prefix("/".into()))]
                }
                PathMatch::Prefix(p) => vec![
                    base_match(m, at, StringMatch::Exact(p.clone())),
                    base_match(m, at, StringMatch::Prefix(with_slash(p))),
                ],
            };
            vec![one]
        }
    }
}

fn destination(b: &BackendRef, domain: &str) -> Destination {
    Destination {
        host: service_host(&b.name, &b.namespace, domain),
        subset: None,
        port: b.port,
    }
}

fn backend_headers(b: &BackendRef) -> Option<Headers> {
    let mut h = Headers::default();
    for f in &b.filters {
        match f {
            Filter::RequestHeaders(ops) => h.request = ops.clone(),
            Filter::ResponseHeaders(ops) => h.response = ops.clone(),
            _ => {}
        }
    }
    (h != Headers::default()).then_some(h)
}

/// The entry's action, filters and timeouts; `prefix_with`: the
/// replacement for the matched prefix (`ReplacePrefixMatch`, adjusted by
/// the caller to the entry's match).
fn entry(
    rule: &Rule,
    resolved: &[bool],
    mirrors_resolved: &[bool],
    at: &At<'_>,
    prefix_with: Option<&str>,
) -> HttpRoute {
    let mut out = HttpRoute::default();
    let mut headers = Headers::default();
    let mut mirrors = vec![];
    let mut mirror_index = 0;
    for f in &rule.filters {
        match f {
            Filter::RequestHeaders(ops) => headers.request = ops.clone(),
            Filter::ResponseHeaders(ops) => headers.response = ops.clone(),
            Filter::Redirect {
                scheme,
                hostname,
                path,
                port,
                status,
            } => {
                let mut r = Redirect {
                    scheme: scheme.clone(),
                    authority: hostname.clone(),
                    port: *port,
                    redirect_code: Some(*status),
                    ..Redirect::default()
                };
                match path {
                    Some(PathModifier::ReplaceFullPath(p)) => r.uri = Some(p.clone()),
                    Some(PathModifier::ReplacePrefixMatch(_)) => {
                        r.uri_prefix = prefix_with.map(str::to_string)
                    }
                    None => {}
                }
                out.redirect = Some(r);
            }
            Filter::Rewrite { hostname, path } => {
                let mut rw = Rewrite {
                    authority: hostname.clone(),
                    ..Rewrite::default()
                };
                match path {
                    Some(PathModifier::ReplaceFullPath(p)) => {
                        rw.uri_regex = Some(("/.*".to_string(), p.clone()))
                    }
                    Some(PathModifier::ReplacePrefixMatch(_)) => {
                        rw.uri = prefix_with.map(str::to_string)
                    }
                    None => {}
                }
                out.rewrite = Some(rw);
            }
            Filter::Mirror { backend, percent } => {
                if mirrors_resolved.get(mirror_index).copied().unwrap_or(false) {
                    mirrors.push((destination(backend, at.cluster_domain), *percent));
                }
                mirror_index += 1;
            }
        }
    }
    if headers != Headers::default() {
        out.headers = Some(headers);
    }
    let mut mirrors = mirrors.into_iter();
    if let Some((first, percent)) = mirrors.next() {
        out.mirror = Some(first);
        out.mirror_percentage = percent;
    }
    let more: Vec<Value> = mirrors.map(|(d, p)| raw_mirror(&d, p)).collect();
    if !more.is_empty() {
        out.other_mirrors
            .insert("mirrors".into(), Value::Sequence(more));
    }
    out.timeout = rule.request_timeout;
    if let Some(per_try) = rule.backend_request_timeout {
        out.retries = Some(Retries {
            attempts: DEFAULT_ATTEMPTS,
            per_try_timeout: Some(per_try),
            ..Retries::default()
        });
    }
    if out.redirect.is_some() {
        return out;
    }
    let any_valid = rule
        .backends
        .iter()
        .zip(resolved)
        .any(|(b, ok)| *ok && b.weight > 0);
    if !any_valid {
        // No backend to send to: Gateway API's 500.
        let mut d = serde_yaml::Mapping::new();
        d.insert("status".into(), 500.into());
        out.direct_response = Some(Value::Mapping(d));
        return out;
    }
    out.route = rule
        .backends
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| HttpRouteDestination {
            destination: destination(b, at.cluster_domain),
            weight: Some(b.weight),
            headers: backend_headers(b),
        })
        .collect();
    out
}

/// A further mirror in the form the VirtualService translation reads
/// from `mirrors` (`{destination: {host, port: {number}}, percentage: {value}}`).
fn raw_mirror(d: &Destination, percent: Option<crate::model::routing::Percent>) -> Value {
    let mut dest = BTreeMap::new();
    dest.insert("host".to_string(), Value::from(d.host.clone()));
    if let Some(p) = d.port {
        let mut port = serde_yaml::Mapping::new();
        port.insert("number".into(), u64::from(p).into());
        dest.insert("port".to_string(), Value::Mapping(port));
    }
    let mut m = serde_yaml::Mapping::new();
    m.insert(
        "destination".into(),
        serde_yaml::to_value(dest).unwrap_or(Value::Null),
    );
    if let Some(p) = percent {
        let mut pv = serde_yaml::Mapping::new();
        pv.insert("value".into(), p.value().into());
        m.insert("percentage".into(), Value::Mapping(pv));
    }
    Value::Mapping(m)
}
