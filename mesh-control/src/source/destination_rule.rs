//! DestinationRule: YAML → [`DestinationRule`], validated as istiod's
//! webhook validates it (see [`super::routing`] for the shared pieces).
use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{
    export_to::{export_to, own_namespace_only},
    fields,
    routing::{
        boolean, choice, duration, entries, int_percent, join, labels, list, port_selector,
        req_text, text, u32_field, uint, Cx,
    },
};
use crate::model::routing::{
    ConnectionPool, ConsistentHash, DestinationRule, HashKey, HttpSettings, LoadBalancer,
    OutlierDetection, PolicySettings, SimpleLb, Subset, TcpSettings, TrafficPolicy,
};

const SIMPLE: &[&str] = &[
    "UNSPECIFIED",
    "ROUND_ROBIN",
    "RANDOM",
    "LEAST_REQUEST",
    "LEAST_CONN",
    "PASSTHROUGH",
];

/// Parses the DestinationRule in `value`; `None` when any problem was
/// reported.
pub(crate) fn destination_rule(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    version: &str,
    name: &str,
    namespace: &str,
) -> Option<DestinationRule> {
    let before = cx.count();
    if !cx.check_version("DestinationRule", version) {
        return None;
    }
    let mut dr = DestinationRule {
        name: name.to_string(),
        namespace: namespace.to_string(),
        file: cx.rep.file.to_string(),
        host: String::new(),
        traffic_policy: None,
        subsets: vec![],
        export_to: vec![],
        workload_selector: None,
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
            "host" => dr.host = req_text(cx, value, &at).unwrap_or_default(),
            "trafficPolicy" => dr.traffic_policy = traffic_policy(cx, value, &at),
            "subsets" => {
                for (item, at) in list(cx, value, &at) {
                    dr.subsets.extend(subset(cx, item, &at));
                }
            }
            "exportTo" => dr.export_to = export_to(cx.rep, value, &at, namespace),
            "workloadSelector" => {
                let labels_value = value.get("matchLabels").unwrap_or(&Value::Null);
                dr.workload_selector = Some(labels(cx, labels_value, &join(&at, "matchLabels")));
            }
            other => dr.unknown.push(other.to_string()),
        }
    }
    if dr.host.is_empty() && cx.count() == before {
        cx.error("spec.host", "required field is missing");
    }
    if dr.host == "*" || dr.host.chars().any(char::is_whitespace) {
        cx.error(
            "spec.host",
            format!("{:?} is not a host a rule can apply to", dr.host),
        );
    }
    if dr.workload_selector.is_some()
        && !dr.export_to.is_empty()
        && !own_namespace_only(&dr.export_to, namespace)
    {
        cx.error(
            "spec.exportTo",
            "a DestinationRule with a workloadSelector is exported to its own namespace only (\".\")",
        );
    }
    let mut seen = BTreeMap::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        if let Some(first) = seen.insert(s.name.as_str(), i) {
            cx.error(
                format!("spec.subsets[{i}].name"),
                format!(
                    "duplicate subset name {:?} (also spec.subsets[{first}])",
                    s.name
                ),
            );
        }
    }
    (cx.count() == before).then_some(dr)
}

fn subset(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<Subset> {
    let before = cx.count();
    let (mut name, mut subset_labels, mut policy) = (None, BTreeMap::new(), None);
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "name" => {
                name = req_text(cx, value, &at);
                if let Some(n) = &name {
                    fields::check_name(cx.rep, &at, n, true);
                }
            }
            "labels" => subset_labels = labels(cx, value, &at),
            "trafficPolicy" => policy = traffic_policy(cx, value, &at),
            other => cx.warn(&at, format!("{other:?} is not a subset field; ignored")),
        }
    }
    if name.is_none() && cx.count() == before {
        cx.error(join(field, "name"), "required field is missing");
    }
    if cx.count() != before {
        return None;
    }
    Some(Subset {
        name: name?,
        labels: subset_labels,
        traffic_policy: policy,
    })
}

fn traffic_policy(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<TrafficPolicy> {
    let before = cx.count();
    let mut policy = TrafficPolicy::default();
    let mut any = false;
    for (key, value, at) in entries(cx, value, field) {
        any = true;
        if settings_field(cx, &mut policy.settings, key, value, &at) {
            continue;
        }
        match key {
            "portLevelSettings" => {
                for (item, at) in list(cx, value, &at) {
                    policy.port_level.extend(port_settings(cx, item, &at));
                }
            }
            other => policy.unknown.push(other.to_string()),
        }
    }
    if !any && cx.count() == before {
        cx.error(field, "a traffic policy needs at least one field");
    }
    (cx.count() == before).then_some(policy)
}

/// One of the fields a policy and a port-level setting share; false when
/// `key` is not one.
fn settings_field(
    cx: &mut Cx<'_, '_>,
    settings: &mut PolicySettings,
    key: &str,
    value: &Value,
    at: &str,
) -> bool {
    match key {
        "loadBalancer" => settings.load_balancer = load_balancer(cx, value, at),
        "connectionPool" => settings.connection_pool = connection_pool(cx, value, at),
        "outlierDetection" => settings.outlier_detection = outlier_detection(cx, value, at),
        "tls" => settings.tls = Some(value.clone()),
        _ => return false,
    }
    true
}

fn port_settings(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<(u16, PolicySettings)> {
    let before = cx.count();
    let (mut port, mut settings) = (None, PolicySettings::default());
    for (key, value, at) in entries(cx, value, field) {
        if key == "port" {
            port = port_selector(cx, value, &at);
        } else if !settings_field(cx, &mut settings, key, value, &at) {
            cx.warn(&at, format!("{key:?} is not a port-level setting; ignored"));
        }
    }
    if port.is_none() && cx.count() == before {
        cx.error(join(field, "port.number"), "required field is missing");
    }
    if cx.count() != before {
        return None;
    }
    Some((port?, settings))
}

fn load_balancer(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<LoadBalancer> {
    let before = cx.count();
    let mut lb = LoadBalancer::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "simple" => {
                lb.simple = choice(cx, value, &at, SIMPLE).map(|s| match s.as_str() {
                    "ROUND_ROBIN" => SimpleLb::RoundRobin,
                    "RANDOM" => SimpleLb::Random,
                    "LEAST_REQUEST" | "LEAST_CONN" => SimpleLb::LeastRequest,
                    "PASSTHROUGH" => SimpleLb::Passthrough,
                    _ => SimpleLb::Unspecified,
                })
            }
            "consistentHash" => lb.consistent_hash = consistent_hash(cx, value, &at),
            other => {
                lb.other.insert(other.to_string(), value.clone());
            }
        }
    }
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        cx.error(field, "only one of simple and consistentHash may be set");
    }
    (cx.count() == before).then_some(lb)
}

fn consistent_hash(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<ConsistentHash> {
    let before = cx.count();
    let (mut keys, mut ring, mut maglev, mut deprecated_ring) = (vec![], None, None, None);
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "httpHeaderName" => keys.extend(req_text(cx, value, &at).map(HashKey::HttpHeaderName)),
            "httpQueryParameterName" => {
                keys.extend(req_text(cx, value, &at).map(HashKey::HttpQueryParameterName))
            }
            "useSourceIp" => {
                if boolean(cx, value, &at) == Some(true) {
                    keys.push(HashKey::UseSourceIp);
                }
            }
            "httpCookie" => keys.extend(http_cookie(cx, value, &at)),
            "minimumRingSize" => deprecated_ring = uint(cx, value, &at, u64::MAX),
            "ringHash" => {
                for (key, value, at) in entries(cx, value, &at) {
                    match key {
                        "minimumRingSize" => ring = uint(cx, value, &at, u64::MAX),
                        other => {
                            cx.warn(&at, format!("{other:?} is not a ringHash field; ignored"))
                        }
                    }
                }
                ring = ring.or(Some(0));
            }
            "maglev" => {
                for (key, value, at) in entries(cx, value, &at) {
                    match key {
                        "tableSize" => maglev = uint(cx, value, &at, u64::MAX),
                        other => cx.warn(&at, format!("{other:?} is not a maglev field; ignored")),
                    }
                }
                maglev = maglev.or(Some(0));
            }
            other => cx.warn(
                &at,
                format!("{other:?} is not a consistentHash field; ignored"),
            ),
        }
    }
    if cx.count() != before {
        return None;
    }
    if ring.is_some() && maglev.is_some() {
        cx.error(field, "only one of ringHash and maglev may be set");
    }
    if keys.len() != 1 {
        cx.error(
            field,
            "needs exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
        );
    }
    (cx.count() == before).then(|| ConsistentHash {
        key: keys.remove(0),
        // 0 (a bare `ringHash: {}` / `maglev: {}`): Envoy's default.
        ring_hash_minimum_ring_size: ring.or(deprecated_ring).filter(|n| *n > 0),
        maglev_table_size: maglev.filter(|n| *n > 0),
    })
}

fn http_cookie(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<HashKey> {
    let before = cx.count();
    let (mut name, mut path, mut ttl) = (None, None, None);
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "name" => name = req_text(cx, value, &at),
            "path" => path = text(cx, value, &at),
            "ttl" => ttl = duration(cx, value, &at, true),
            other => cx.warn(
                &at,
                format!("{other:?} is not an httpCookie field; ignored"),
            ),
        }
    }
    if name.is_none() && cx.count() == before {
        cx.error(join(field, "name"), "required field is missing");
    }
    if cx.count() != before {
        return None;
    }
    Some(HashKey::HttpCookie {
        name: name?,
        path,
        ttl,
    })
}

fn connection_pool(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<ConnectionPool> {
    let before = cx.count();
    let mut pool = ConnectionPool::default();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "tcp" => {
                let mut tcp = TcpSettings::default();
                for (key, value, at) in entries(cx, value, &at) {
                    match key {
                        "maxConnections" => tcp.max_connections = int32(cx, value, &at),
                        "connectTimeout" => tcp.connect_timeout = duration(cx, value, &at, false),
                        other => {
                            tcp.other.insert(other.to_string(), value.clone());
                        }
                    }
                }
                pool.tcp = Some(tcp);
            }
            "http" => {
                let mut http = HttpSettings::default();
                for (key, value, at) in entries(cx, value, &at) {
                    match key {
                        "http1MaxPendingRequests" => {
                            http.http1_max_pending_requests = int32(cx, value, &at)
                        }
                        "http2MaxRequests" => http.http2_max_requests = int32(cx, value, &at),
                        "maxRequestsPerConnection" => {
                            http.max_requests_per_connection = int32(cx, value, &at)
                        }
                        "maxRetries" => http.max_retries = int32(cx, value, &at),
                        "idleTimeout" => http.idle_timeout = duration(cx, value, &at, false),
                        other => {
                            http.other.insert(other.to_string(), value.clone());
                        }
                    }
                }
                pool.http = Some(http);
            }
            other => cx.warn(&at, format!("{other:?} is not tcp or http; ignored")),
        }
    }
    if pool.tcp.is_none() && pool.http.is_none() && cx.count() == before {
        cx.error(field, "a connection pool needs tcp or http settings");
    }
    (cx.count() == before).then_some(pool)
}

/// Istio's `int32` limits: 0 to 2^31-1.
fn int32(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<u32> {
    uint(cx, value, field, i32::MAX as u64).map(|n| n as u32)
}

fn outlier_detection(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Option<OutlierDetection> {
    let before = cx.count();
    let mut od = OutlierDetection::default();
    let mut deprecated = None;
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "consecutive5xxErrors" => od.consecutive_5xx_errors = u32_field(cx, value, &at),
            "consecutiveErrors" => deprecated = int32(cx, value, &at),
            "consecutiveGatewayErrors" => od.consecutive_gateway_errors = u32_field(cx, value, &at),
            "interval" => od.interval = duration(cx, value, &at, false),
            "baseEjectionTime" => od.base_ejection_time = duration(cx, value, &at, false),
            "maxEjectionPercent" => od.max_ejection_percent = int_percent(cx, value, &at),
            "minHealthPercent" => od.min_health_percent = int_percent(cx, value, &at),
            other => {
                od.other.insert(other.to_string(), value.clone());
            }
        }
    }
    // The deprecated `consecutiveErrors` counts 502/503/504 only: istiod
    // writes it as Envoy's `consecutive_gateway_failure` (ARCHITECTURE.md, decision 39).
    od.consecutive_gateway_errors = od.consecutive_gateway_errors.or(deprecated);
    (cx.count() == before).then_some(od)
}
