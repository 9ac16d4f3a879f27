//! One VirtualService `http[]` entry → the action of its Envoy routes:
//! `RouteAction` (cluster or weighted clusters, timeout, retries,
//! rewrites, hash policy, mirrors), `RedirectAction` or
//! `DirectResponseAction`, plus header edits and the fault filter's
//! per-route config. Destinations resolve to Istio cluster names; a
//! destination without a port takes the virtual host's port when it is
//! the same service, else the service's only port.
use base64::Engine as _;
use envoy_types::pb::envoy::{
    config::{
        core::v3::{
            data_source, header_value_option::HeaderAppendAction, DataSource, HeaderValue,
            HeaderValueOption, RuntimeFractionalPercent,
        },
        route::v3::{
            redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
            retry_policy::{retry_host_predicate, RetryHostPredicate},
            route::Action,
            route_action::{
                hash_policy::{self, PolicySpecifier},
                ClusterSpecifier, HashPolicy, HostRewriteSpecifier, RequestMirrorPolicy,
            },
            weighted_cluster::ClusterWeight,
            DirectResponseAction, RedirectAction, RetryPolicy, Route, RouteAction, WeightedCluster,
        },
    },
    r#type::matcher::v3::RegexMatchAndSubstitute,
};
use serde_yaml::Value;

use super::{cluster_name, fault, listener::FAULT_FILTER, pb, policy, route_match::regex, Cx};
use crate::model::{
    routing::{Destination, HashKey, HeaderOperations, Headers, HttpRoute, Retries},
    Service, VirtualService,
};

/// Istio's retry policy when a route sets none.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";
const PREVIOUS_HOSTS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";

/// Where the routes being built live: the virtual host's service and port.
#[derive(Clone, Copy)]
pub struct Target<'s> {
    pub service: &'s Service,
    pub port: u16,
}

/// Fills `route`'s action, header edits and fault config from `http` of
/// `vs`. An error names the field Envoy cannot express; the caller skips
/// the route.
pub fn apply(
    cx: &Cx<'_>,
    vs: &VirtualService,
    http: &HttpRoute,
    target: Target<'_>,
    route: &mut Route,
) -> Result<(), String> {
    if http.delegate.is_some() {
        return Err("delegate: delegate VirtualServices are not supported yet".into());
    }
    if let Some(f) = &http.fault {
        route
            .typed_per_filter_config
            .insert(FAULT_FILTER.to_string(), fault::fault_config(f)?);
    }
    if let Some(h) = &http.headers {
        add_headers(route, h);
    }
    route.action = Some(if let Some(r) = &http.redirect {
        Action::Redirect(RedirectAction {
            host_redirect: r.authority.clone().unwrap_or_default(),
            port_redirect: r.port.map(u32::from).unwrap_or(0),
            response_code: redirect_code(r.redirect_code)? as i32,
            scheme_rewrite_specifier: r.scheme.clone().map(SchemeRewriteSpecifier::SchemeRedirect),
            path_rewrite_specifier: r
                .uri
                .clone()
                .map(PathRewriteSpecifier::PathRedirect)
                .or_else(|| {
                    r.uri_prefix
                        .clone()
                        .map(PathRewriteSpecifier::PrefixRewrite)
                }),
            ..Default::default()
        })
    } else if let Some(d) = &http.direct_response {
        Action::DirectResponse(direct_response(d)?)
    } else {
        Action::Route(route_action(cx, vs, http, target, route)?)
    });
    Ok(())
}

fn redirect_code(code: Option<u16>) -> Result<RedirectResponseCode, String> {
    Ok(match code.unwrap_or(301) {
        301 => RedirectResponseCode::MovedPermanently,
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        other => {
            return Err(format!(
                "redirect.redirectCode: {other} is not one Envoy sends (301, 302, 303, 307, 308)"
            ))
        }
    })
}

/// `directResponse{status, body{string | bytes}}`, as written.
fn direct_response(d: &Value) -> Result<DirectResponseAction, String> {
    let status = d
        .get("status")
        .and_then(Value::as_u64)
        .filter(|s| (200..=599).contains(s))
        .ok_or("directResponse.status: expected an HTTP status 200-599")?;
    let body = match d.get("body") {
        None | Some(Value::Null) => None,
        Some(b) => Some(if let Some(s) = b.get("string").and_then(Value::as_str) {
            data_source::Specifier::InlineString(s.to_string())
        } else if let Some(s) = b.get("bytes").and_then(Value::as_str) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("directResponse.body.bytes: not base64: {e}"))?;
            data_source::Specifier::InlineBytes(bytes)
        } else {
            return Err("directResponse.body: needs string or bytes".into());
        }),
    };
    Ok(DirectResponseAction {
        status: status as u32,
        body: body.map(|specifier| DataSource {
            specifier: Some(specifier),
            ..Default::default()
        }),
    })
}

/// The cluster a destination names.
pub fn destination_cluster(
    cx: &Cx<'_>,
    namespace: &str,
    d: &Destination,
    target: Target<'_>,
) -> (String, u16) {
    let fqdn = cx.fqdn(&d.host, namespace);
    let port = d
        .port
        .unwrap_or_else(|| match cx.service(&d.host, namespace) {
            Some(s) if s.hostname == target.service.hostname => target.port,
            Some(s) if s.ports.len() == 1 => *s.ports.keys().next().unwrap_or(&target.port),
            _ => target.port,
        });
    (cluster_name(port, d.subset.as_deref(), &fqdn), port)
}

fn route_action(
    cx: &Cx<'_>,
    vs: &VirtualService,
    http: &HttpRoute,
    target: Target<'_>,
    route: &mut Route,
) -> Result<RouteAction, String> {
    let single = http.route.len() == 1;
    let weighted: Vec<_> = http
        .route
        .iter()
        .map(|d| (d, d.weight.unwrap_or(if single { 100 } else { 0 })))
        .filter(|(_, w)| *w > 0)
        .collect();
    if weighted.is_empty() {
        return Err("route: no destination with a weight above 0".into());
    }
    let clusters: Vec<_> = weighted
        .iter()
        .map(|(d, w)| {
            let (name, port) = destination_cluster(cx, &vs.namespace, &d.destination, target);
            (name, port, *w, *d)
        })
        .collect();
    let cluster_specifier = if let [(name, _, _, d)] = clusters.as_slice() {
        if let Some(h) = &d.headers {
            add_headers(route, h);
        }
        ClusterSpecifier::Cluster(name.clone())
    } else {
        ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .iter()
                .map(|(name, _, weight, d)| {
                    let mut c = ClusterWeight {
                        name: name.clone(),
                        weight: Some(pb::u32v(*weight)),
                        ..Default::default()
                    };
                    if let Some(h) = &d.headers {
                        c.request_headers_to_add = header_options(&h.request);
                        c.request_headers_to_remove = h.request.remove.clone();
                        c.response_headers_to_add = header_options(&h.response);
                        c.response_headers_to_remove = h.response.remove.clone();
                    }
                    c
                })
                .collect(),
            ..Default::default()
        })
    };
    let mut action = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: Some(pb::duration(http.timeout.unwrap_or_default())),
        retry_policy: retry_policy(http.retries.as_ref()),
        hash_policy: hash_policy(
            cx,
            vs,
            &clusters
                .iter()
                .map(|(_, p, _, d)| (&d.destination, *p))
                .collect::<Vec<_>>(),
        ),
        ..Default::default()
    };
    if let Some(rw) = &http.rewrite {
        action.prefix_rewrite = rw.uri.clone().unwrap_or_default();
        action.regex_rewrite = rw
            .uri_regex
            .as_ref()
            .map(|(re, with)| RegexMatchAndSubstitute {
                pattern: Some(regex(re)),
                substitution: with.clone(),
            });
        action.host_rewrite_specifier = rw
            .authority
            .clone()
            .map(HostRewriteSpecifier::HostRewriteLiteral);
    }
    if let Some(mirror) = &http.mirror {
        let (cluster, _) = destination_cluster(cx, &vs.namespace, mirror, target);
        action.request_mirror_policies.push(RequestMirrorPolicy {
            cluster,
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(http.mirror_percentage.map_or_else(pb::all, pb::fraction)),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for (i, m) in http
        .other_mirrors
        .get("mirrors")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (dest, percent) = raw_mirror(m).map_err(|why| format!("mirrors[{i}].{why}"))?;
        let (cluster, _) = destination_cluster(cx, &vs.namespace, &dest, target);
        action.request_mirror_policies.push(RequestMirrorPolicy {
            cluster,
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(percent.map_or_else(pb::all, pb::fraction)),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Ok(action)
}

/// One entry of `mirrors` (Istio 1.22+, kept as written by the source):
/// `{destination: {host, subset, port: {number}}, percentage: {value}}`.
fn raw_mirror(m: &Value) -> Result<(Destination, Option<crate::model::routing::Percent>), String> {
    let d = m.get("destination").ok_or("destination: required")?;
    let host = d
        .get("host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or("destination.host: required")?;
    let port = match d.get("port").and_then(|p| p.get("number")) {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or("destination.port.number: not a port")?,
        ),
    };
    let percent = match m.get("percentage").and_then(|p| p.get("value")) {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .and_then(crate::model::routing::Percent::new)
                .ok_or("percentage.value: not 0-100")?,
        ),
    };
    Ok((
        Destination {
            host: host.to_string(),
            subset: d.get("subset").and_then(Value::as_str).map(str::to_string),
            port,
        },
        percent,
    ))
}

/// VS retries → Envoy's; `None` (no policy) for `attempts: 0`.
pub fn retry_policy(retries: Option<&Retries>) -> Option<RetryPolicy> {
    let predicate = RetryHostPredicate {
        name: PREVIOUS_HOSTS.into(),
        config_type: Some(retry_host_predicate::ConfigType::TypedConfig(
            envoy_types::pb::google::protobuf::Any {
                type_url: PREVIOUS_HOSTS_TYPE.into(),
                value: vec![],
            },
        )),
    };
    let mut policy = RetryPolicy {
        retry_host_predicate: vec![predicate],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    };
    let Some(r) = retries else {
        policy.num_retries = Some(pb::u32v(2));
        policy.retry_on = DEFAULT_RETRY_ON.into();
        policy.retriable_status_codes = vec![503];
        return Some(policy);
    };
    if r.attempts == 0 {
        return None;
    }
    policy.num_retries = Some(pb::u32v(r.attempts));
    policy.per_try_timeout = pb::positive_duration(r.per_try_timeout);
    let mut on = vec![];
    for item in r.retry_on.as_deref().unwrap_or(DEFAULT_RETRY_ON).split(',') {
        let item = item.trim();
        match item.parse::<u32>() {
            Ok(code) => policy.retriable_status_codes.push(code),
            Err(_) if !item.is_empty() && !on.contains(&item) => on.push(item),
            Err(_) => {}
        }
    }
    if r.retry_on.is_none() {
        policy.retriable_status_codes.push(503);
    }
    if !policy.retriable_status_codes.is_empty() && !on.contains(&"retriable-status-codes") {
        on.push("retriable-status-codes");
    }
    policy.retry_on = on.join(",");
    Some(policy)
}

/// The consistent-hash key of the destinations' DestinationRules, when
/// they all agree on one (Envoy hashes per route, not per cluster).
fn hash_policy(cx: &Cx<'_>, vs: &VirtualService, dests: &[(&Destination, u16)]) -> Vec<HashPolicy> {
    let keys: Vec<Option<HashKey>> = dests
        .iter()
        .map(|(d, port)| {
            let svc = cx.service(&d.host, &vs.namespace)?;
            let dr = policy::destination_rule(cx, svc);
            policy::settings(dr, d.subset.as_deref(), *port)
                .load_balancer?
                .consistent_hash
                .map(|h| h.key)
        })
        .collect();
    let Some(Some(first)) = keys.first() else {
        return vec![];
    };
    if keys.iter().any(|k| k.as_ref() != Some(first)) {
        return vec![];
    }
    let specifier = match first {
        HashKey::HttpHeaderName(name) => PolicySpecifier::Header(hash_policy::Header {
            header_name: name.clone(),
            ..Default::default()
        }),
        HashKey::HttpCookie { name, path, ttl } => PolicySpecifier::Cookie(hash_policy::Cookie {
            name: name.clone(),
            path: path.clone().unwrap_or_default(),
            ttl: ttl.map(pb::duration),
            ..Default::default()
        }),
        HashKey::UseSourceIp => {
            PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
                source_ip: true,
            })
        }
        HashKey::HttpQueryParameterName(name) => {
            PolicySpecifier::QueryParameter(hash_policy::QueryParameter { name: name.clone() })
        }
    };
    vec![HashPolicy {
        policy_specifier: Some(specifier),
        terminal: false,
    }]
}

/// `set` → overwrite (or add), `add` → append (or add).
fn header_options(ops: &HeaderOperations) -> Vec<HeaderValueOption> {
    let option = |(k, v): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let set = ops
        .set
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd));
    let add = ops
        .add
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd));
    set.chain(add).collect()
}

fn add_headers(route: &mut Route, h: &Headers) {
    route
        .request_headers_to_add
        .extend(header_options(&h.request));
    route
        .request_headers_to_remove
        .extend(h.request.remove.iter().cloned());
    route
        .response_headers_to_add
        .extend(header_options(&h.response));
    route
        .response_headers_to_remove
        .extend(h.response.remove.iter().cloned());
}

#[cfg(test)]
mod tests;
