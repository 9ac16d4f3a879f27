//! VirtualService: YAML → [`VirtualService`], validated as istiod's
//! webhook validates it (see [`super::routing`] for the shared pieces).
//!
//! Two things istiod rejects are accepted here with a warning, because
//! the course notes the mesh is tested against rely on them (ARCHITECTURE.md, decision 26):
//! a VirtualService with no `http`, `tcp` or `tls` route (it routes
//! nothing), and host `*` bound to the `mesh` gateway (it matches no
//! in-mesh destination).
use serde_yaml::Value;

use super::export_to::export_to;
use super::routing::{
    boolean, destination, duration, entries, headers, int_percent, join, labels, list, match_map,
    percentage, port, regex, req_text, string_match, strings, text, u32_field, uint, Cx,
};
use crate::model::routing::{
    AbortStatus, Fault, FaultAbort, FaultDelay, HttpMatch, HttpRoute, HttpRouteDestination,
    Redirect, Retries, Rewrite, TcpRoute, TlsMatch, TlsRoute, VirtualService,
};

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` policies, the
/// ones istiod accepts in `retries.retryOn` (besides HTTP status codes).
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Parses the VirtualService in `value`; `None` when any problem was
/// reported.
pub(crate) fn virtual_service(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    version: &str,
    name: &str,
    namespace: &str,
) -> Option<VirtualService> {
    let before = cx.count();
    if !cx.check_version("VirtualService", version) {
        return None;
    }
    let mut vs = VirtualService {
        name: name.to_string(),
        namespace: namespace.to_string(),
        file: cx.rep.file.to_string(),
        hosts: vec![],
        gateways: vec![],
        export_to: vec![],
        http: vec![],
        tcp: vec![],
        tls: vec![],
        unknown: vec![],
    };
    let spec = value.get("spec").unwrap_or(&Value::Null);
    let spec_entries = if spec.is_null() {
        vec![]
    } else {
        entries(cx, spec, "spec")
    };
    for (key, value, at) in spec_entries {
        match key {
            "hosts" => vs.hosts = strings(cx, value, &at),
            "gateways" => vs.gateways = strings(cx, value, &at),
            "exportTo" => vs.export_to = export_to(cx.rep, value, &at, namespace),
            "http" => {
                for (item, at) in list(cx, value, &at) {
                    vs.http.extend(http_route(cx, item, &at));
                }
            }
            "tcp" => {
                for (item, at) in list(cx, value, &at) {
                    vs.tcp.extend(tcp_route(cx, item, &at));
                }
            }
            "tls" => {
                for (item, at) in list(cx, value, &at) {
                    vs.tls.extend(tls_route(cx, item, &at));
                }
            }
            other => vs.unknown.push(other.to_string()),
        }
    }
    let delegate = vs.hosts.is_empty();
    if delegate {
        // A delegate is only reached through another VirtualService's
        // `delegate`, so it cannot bind gateways or carry L4 routes.
        if !vs.gateways.is_empty() {
            cx.error(
                "spec.gateways",
                "a delegate VirtualService (no hosts) must not have gateways",
            );
        }
        if !vs.tcp.is_empty() || !vs.tls.is_empty() {
            cx.error(
                "spec",
                "a delegate VirtualService (no hosts) must not have tcp or tls routes",
            );
        }
    }
    for (i, host) in vs.hosts.iter().enumerate() {
        if host.chars().any(char::is_whitespace) {
            cx.error(
                format!("spec.hosts[{i}]"),
                format!("{host:?} is not a host name"),
            );
        }
    }
    let mesh_bound = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
    if mesh_bound && vs.hosts.iter().any(|h| h == "*") {
        cx.warn(
            "spec.hosts",
            "host \"*\" bound to the mesh gateway matches no in-mesh destination (istiod rejects it)",
        );
    }
    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() && cx.count() == before {
        cx.warn(
            "spec",
            "no http, tcp or tls route: this VirtualService routes nothing (istiod rejects it)",
        );
    }
    (cx.count() == before).then_some(vs)
}

fn http_route(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<HttpRoute> {
    let before = cx.count();
    let mut r = HttpRoute::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "name" => r.name = text(cx, value, &at),
            "match" => {
                for (item, at) in list(cx, value, &at) {
                    r.matches.extend(http_match(cx, item, &at));
                }
            }
            "route" => {
                for (item, at) in list(cx, value, &at) {
                    r.route.extend(route_destination(cx, item, &at));
                }
            }
            "redirect" => r.redirect = redirect(cx, value, &at),
            "directResponse" => r.direct_response = Some(value.clone()),
            "delegate" => r.delegate = Some(value.clone()),
            "rewrite" => r.rewrite = rewrite(cx, value, &at),
            "timeout" => r.timeout = duration(cx, value, &at, true),
            "retries" => r.retries = retries(cx, value, &at),
            "fault" => r.fault = fault(cx, value, &at),
            "mirror" => r.mirror = destination(cx, value, &at),
            "mirrorPercentage" => r.mirror_percentage = percentage(cx, value, &at),
            "mirrors" | "mirrorPercent" | "mirror_percent" => {
                r.other_mirrors.insert(key.to_string(), value.clone());
            }
            "corsPolicy" => r.cors_policy = Some(value.clone()),
            "headers" => r.headers = Some(headers(cx, value, &at)),
            other => r.unknown.push(other.to_string()),
        }
    }
    let has_route = !r.route.is_empty();
    let has_redirect = r.redirect.is_some();
    let has_direct = r.direct_response.is_some();
    let has_delegate = r.delegate.is_some();
    let actions = [has_route, has_redirect, has_direct, has_delegate]
        .iter()
        .filter(|b| **b)
        .count();
    if actions == 0 && cx.count() == before {
        cx.error(
            field,
            "needs one of route, redirect, directResponse or delegate",
        );
    } else if actions > 1 {
        cx.error(
            field,
            "only one of route, redirect, directResponse and delegate may be set",
        );
    }
    if has_redirect && r.rewrite.is_some() {
        cx.error(
            join(field, "rewrite"),
            "rewrite cannot be used with redirect",
        );
    }
    check_weights(cx, &r.route, field);
    (cx.count() == before).then_some(r)
}

/// Istio (since 1.x) treats weights as relative: negative is rejected
/// while parsing, several destinations summing to 0 is rejected here, a
/// sum other than 100 is only warned about (older istiod rejected it).
fn check_weights(cx: &mut Cx<'_, '_>, route: &[HttpRouteDestination], field: &str) {
    if route.len() < 2 {
        return;
    }
    let total: u64 = route.iter().map(|d| u64::from(d.weight.unwrap_or(0))).sum();
    let at = join(field, "route");
    if total == 0 {
        cx.error(
            at,
            "total destination weight is 0 (set weights on the destinations)",
        );
    } else if total != 100 {
        cx.warn(
            &at,
            format!("total destination weight {total} != 100: weights are relative (istiod before 1.20 rejected this)"),
        );
    }
}

fn http_match(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<HttpMatch> {
    let before = cx.count();
    let mut m = HttpMatch::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "name" => m.name = text(cx, value, &at),
            "uri" => m.uri = string_match(cx, value, &at, false),
            "scheme" => m.scheme = string_match(cx, value, &at, false),
            "method" => m.method = string_match(cx, value, &at, false),
            "authority" => m.authority = string_match(cx, value, &at, false),
            "headers" => m.headers = match_map(cx, value, &at, true),
            "queryParams" => m.query_params = match_map(cx, value, &at, false),
            "withoutHeaders" => m.without_headers = match_map(cx, value, &at, true),
            "port" => m.port = port(cx, value, &at),
            "sourceLabels" => m.source_labels = labels(cx, value, &at),
            "gateways" => m.gateways = strings(cx, value, &at),
            "sourceNamespace" => m.source_namespace = req_text(cx, value, &at),
            "ignoreUriCase" => m.ignore_uri_case = boolean(cx, value, &at).unwrap_or(false),
            other => m.unknown.push(other.to_string()),
        }
    }
    (cx.count() == before).then_some(m)
}

fn route_destination(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    field: &str,
) -> Option<HttpRouteDestination> {
    let before = cx.count();
    let (mut dest, mut weight, mut hdrs) = (None, None, None);
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "destination" => dest = destination(cx, value, &at),
            "weight" => weight = uint(cx, value, &at, i32::MAX as u64).map(|w| w as u32),
            "headers" => hdrs = Some(headers(cx, value, &at)),
            other => cx.warn(
                &at,
                format!("{other:?} is not a route destination field; ignored"),
            ),
        }
    }
    if dest.is_none() && cx.count() == before {
        cx.error(join(field, "destination"), "required field is missing");
    }
    if cx.count() != before {
        return None;
    }
    Some(HttpRouteDestination {
        destination: dest?,
        weight,
        headers: hdrs,
    })
}

fn redirect(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<Redirect> {
    let before = cx.count();
    let mut r = Redirect::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "uri" => r.uri = text(cx, value, &at),
            "authority" => r.authority = text(cx, value, &at),
            "scheme" => r.scheme = text(cx, value, &at),
            "port" => r.port = port(cx, value, &at),
            "redirectCode" => {
                r.redirect_code = uint(cx, value, &at, u64::from(u16::MAX)).map(|c| c as u16);
                if r.redirect_code.is_some_and(|c| !(300..=399).contains(&c)) {
                    cx.error(
                        at,
                        format!(
                            "{} is not a redirect code (3xx)",
                            r.redirect_code.unwrap_or(0)
                        ),
                    );
                }
            }
            other => {
                r.other.insert(other.to_string(), value.clone());
            }
        }
    }
    let derives_port = r.other.contains_key("derivePort");
    if r.uri.is_none()
        && r.authority.is_none()
        && r.scheme.is_none()
        && r.port.is_none()
        && !derives_port
    {
        cx.error(field, "a redirect needs uri, authority, scheme or port");
    }
    (cx.count() == before).then_some(r)
}

fn rewrite(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<Rewrite> {
    let before = cx.count();
    let mut r = Rewrite::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "uri" => r.uri = text(cx, value, &at),
            "authority" => r.authority = text(cx, value, &at),
            "uriRegexRewrite" => {
                let (mut re, mut with) = (None, None);
                for (key, value, at) in entries(cx, value, &at) {
                    match key {
                        "match" => re = regex(cx, value, &at),
                        "rewrite" => with = text(cx, value, &at),
                        other => cx.error(at, format!("{other:?} is not match or rewrite")),
                    }
                }
                match (re, with) {
                    (Some(re), Some(with)) => r.uri_regex = Some((re, with)),
                    _ if cx.count() == before => cx.error(at, "needs both match and rewrite"),
                    _ => {}
                }
            }
            other => r.unknown.push(other.to_string()),
        }
    }
    if r.uri.is_some() && r.uri_regex.is_some() {
        cx.error(field, "only one of uri and uriRegexRewrite may be set");
    }
    (cx.count() == before).then_some(r)
}

fn retries(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<Retries> {
    let before = cx.count();
    let mut r = Retries::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "attempts" => r.attempts = uint(cx, value, &at, i32::MAX as u64).unwrap_or(0) as u32,
            "perTryTimeout" => r.per_try_timeout = duration(cx, value, &at, false),
            "retryOn" => {
                r.retry_on = text(cx, value, &at);
                for policy in r.retry_on.iter().flat_map(|s| s.split(',')) {
                    let policy = policy.trim();
                    if !(RETRY_ON.contains(&policy) || policy.parse::<u16>().is_ok()) {
                        cx.error(
                            &at,
                            format!(
                                "{policy:?} is not a retry policy ({} or an HTTP status code)",
                                RETRY_ON.join(", ")
                            ),
                        );
                    }
                }
            }
            "retryRemoteLocalities" => r.retry_remote_localities = boolean(cx, value, &at),
            other => cx.warn(&at, format!("{other:?} is not a retries field; ignored")),
        }
    }
    (cx.count() == before).then_some(r)
}

fn fault(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<Fault> {
    let before = cx.count();
    let mut f = Fault::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "delay" => f.delay = delay(cx, value, &at),
            "abort" => f.abort = abort(cx, value, &at),
            other => cx.error(at, format!("{other:?} is not delay or abort")),
        }
    }
    if f.delay.is_none() && f.abort.is_none() && cx.count() == before {
        cx.error(field, "a fault needs a delay or an abort");
    }
    (cx.count() == before).then_some(f)
}

fn delay(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<FaultDelay> {
    let before = cx.count();
    let (mut fixed, mut percentage_, mut percent) = (None, None, None);
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "fixedDelay" => fixed = duration(cx, value, &at, false),
            "percentage" => percentage_ = percentage(cx, value, &at),
            "percent" => percent = int_percent(cx, value, &at),
            "exponentialDelay" => cx.error(at, "exponentialDelay is not supported (nor by Istio)"),
            other => cx.warn(&at, format!("{other:?} is not a delay field; ignored")),
        }
    }
    if fixed.is_none() && cx.count() == before {
        cx.error(join(field, "fixedDelay"), "required field is missing");
    }
    if cx.count() != before {
        return None;
    }
    Some(FaultDelay {
        fixed_delay: fixed?,
        percentage: percentage_,
        percent,
    })
}

fn abort(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<FaultAbort> {
    let before = cx.count();
    let (mut statuses, mut percentage_) = (vec![], None);
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "httpStatus" => {
                if let Some(code) = uint(cx, value, &at, u64::from(u16::MAX)) {
                    if (200..=599).contains(&code) {
                        statuses.push(AbortStatus::Http(code as u16));
                    } else {
                        cx.error(at, format!("{code} is not an HTTP status 200-599"));
                    }
                }
            }
            "grpcStatus" => statuses.extend(req_text(cx, value, &at).map(AbortStatus::Grpc)),
            "http2Error" => statuses.extend(req_text(cx, value, &at).map(AbortStatus::Http2Error)),
            "percentage" => percentage_ = percentage(cx, value, &at),
            other => cx.warn(&at, format!("{other:?} is not an abort field; ignored")),
        }
    }
    if cx.count() != before {
        return None;
    }
    if statuses.len() != 1 {
        cx.error(
            field,
            "needs exactly one of httpStatus, grpcStatus or http2Error",
        );
        return None;
    }
    Some(FaultAbort {
        status: statuses.remove(0),
        percentage: percentage_,
    })
}

fn tcp_route(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<TcpRoute> {
    let before = cx.count();
    let mut r = TcpRoute::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "match" => {
                for (item, at) in list(cx, value, &at) {
                    let mut port_ = None;
                    for (key, value, at) in entries(cx, item, &at) {
                        match key {
                            "port" => port_ = port(cx, value, &at),
                            other if !r.unknown.iter().any(|u| u == other) => {
                                r.unknown.push(other.to_string())
                            }
                            _ => {}
                        }
                    }
                    r.match_ports.push(port_);
                }
            }
            "route" => r.route = l4_destinations(cx, value, &at),
            other => r.unknown.push(other.to_string()),
        }
    }
    check_l4_route(cx, &r.route, field, before, "TCP");
    (cx.count() == before).then_some(r)
}

/// `tls[]`: matches by SNI (each needs `sniHosts`, as istiod), then
/// destinations as a TCP route's.
fn tls_route(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<TlsRoute> {
    let before = cx.count();
    let mut r = TlsRoute::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "match" => {
                for (item, at) in list(cx, value, &at) {
                    let mut m = TlsMatch::default();
                    for (key, value, at) in entries(cx, item, &at) {
                        match key {
                            "sniHosts" => m.sni_hosts = strings(cx, value, &at),
                            "port" => m.port = port(cx, value, &at),
                            "gateways" => m.gateways = strings(cx, value, &at),
                            other if !r.unknown.iter().any(|u| u == other) => {
                                r.unknown.push(other.to_string())
                            }
                            _ => {}
                        }
                    }
                    if m.sni_hosts.is_empty() {
                        cx.error(
                            join(&at, "sniHosts"),
                            "a TLS route match needs at least one SNI host",
                        );
                    }
                    r.matches.push(m);
                }
            }
            "route" => r.route = l4_destinations(cx, value, &at),
            other => r.unknown.push(other.to_string()),
        }
    }
    if r.matches.is_empty() && cx.count() == before {
        cx.error(
            join(field, "match"),
            "a TLS route needs at least one match (with sniHosts)",
        );
    }
    check_l4_route(cx, &r.route, field, before, "TLS");
    (cx.count() == before).then_some(r)
}

/// `route[]` of a `tcp` or `tls` entry: destinations with weights.
fn l4_destinations(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    field: &str,
) -> Vec<(crate::model::routing::Destination, Option<u32>)> {
    let mut out = vec![];
    for (item, at) in list(cx, value, field) {
        let (mut dest, mut weight) = (None, None);
        let inner = cx.count();
        for (key, value, at) in entries(cx, item, &at) {
            match key {
                "destination" => dest = destination(cx, value, &at),
                "weight" => weight = u32_field(cx, value, &at),
                other => cx.warn(
                    &at,
                    format!("{other:?} is not a route destination field; ignored"),
                ),
            }
        }
        match dest {
            Some(dest) => out.push((dest, weight)),
            None if cx.count() == inner => {
                cx.error(join(&at, "destination"), "required field is missing")
            }
            None => {}
        }
    }
    out
}

/// A `tcp` / `tls` entry needs a destination and, with several, weights.
fn check_l4_route(
    cx: &mut Cx<'_, '_>,
    route: &[(crate::model::routing::Destination, Option<u32>)],
    field: &str,
    before: usize,
    kind: &str,
) {
    if route.is_empty() && cx.count() == before {
        cx.error(
            join(field, "route"),
            format!("a {kind} route needs at least one destination"),
        );
    }
    if route.len() > 1 && route.iter().all(|(_, w)| w.unwrap_or(0) == 0) {
        cx.error(
            join(field, "route"),
            "total destination weight is 0 (set weights on the destinations)",
        );
    }
}
