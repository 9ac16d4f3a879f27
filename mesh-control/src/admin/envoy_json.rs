//! The waypoints' Envoy resources as JSON, for `/config_dump`, in the
//! shape of the waypoint's own admin dump
//! (docs/contracts/waypoint-admin.md): listeners with their address and HTTP filters, routes with
//! virtual hosts and one-line match / action summaries, clusters with
//! their LB policy, circuit breakers and outlier detection, endpoints.
use envoy_types::pb::envoy::config::{
    cluster::v3::{cluster::LbPolicy, Cluster},
    core::v3::{address, socket_address, Address},
    endpoint::v3::{lb_endpoint::HostIdentifier, ClusterLoadAssignment},
    listener::v3::{filter, Listener},
    route::v3::{
        header_matcher::HeaderMatchSpecifier, route::Action, route_action::ClusterSpecifier,
        route_match::PathSpecifier, Route, RouteConfiguration,
    },
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_types::pb::google::protobuf::Duration;
use prost::Message as _;
use serde_json::{json, Value};

fn millis(d: Option<&Duration>) -> Option<i64> {
    d.map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
}

fn socket(a: Option<&Address>) -> String {
    match a.and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(sa)) => match sa.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(p)) => format!("{}:{p}", sa.address),
            _ => sa.address.clone(),
        },
        _ => String::new(),
    }
}

pub fn listener(l: &Listener) -> Value {
    let hcm = l
        .filter_chains
        .first()
        .and_then(|c| c.filters.first())
        .and_then(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) => {
                HttpConnectionManager::decode(any.value.as_slice()).ok()
            }
            _ => None,
        });
    let filters: Vec<String> = hcm
        .iter()
        .flat_map(|h| h.http_filters.iter().map(|f| f.name.clone()))
        .collect();
    json!({"name": l.name, "address": socket(l.address.as_ref()), "http_filters": filters})
}

fn string_match(m: &StringMatcher) -> String {
    match &m.match_pattern {
        Some(MatchPattern::Exact(s)) => format!("={s}"),
        Some(MatchPattern::Prefix(s)) => format!("^={s}"),
        Some(MatchPattern::Suffix(s)) => format!("$={s}"),
        Some(MatchPattern::SafeRegex(r)) => format!("~={}", r.regex),
        Some(MatchPattern::Contains(s)) => format!("*={s}"),
        _ => "?".into(),
    }
}

/// `prefix=/ header baggage-user-agent~=.*Firefox.*`.
fn route_match(r: &Route) -> String {
    let Some(m) = &r.r#match else {
        return String::new();
    };
    let mut parts = vec![match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => format!("prefix={p}"),
        Some(PathSpecifier::Path(p)) => format!("path={p}"),
        Some(PathSpecifier::SafeRegex(re)) => format!("regex={}", re.regex),
        _ => "path?".into(),
    }];
    for h in &m.headers {
        let cond = match &h.header_match_specifier {
            Some(HeaderMatchSpecifier::StringMatch(sm)) => string_match(sm),
            Some(HeaderMatchSpecifier::PresentMatch(_)) => " present".into(),
            _ => "?".into(),
        };
        let not = if h.invert_match { "!" } else { "" };
        parts.push(format!("header {not}{}{cond}", h.name));
    }
    for q in &m.query_parameters {
        parts.push(format!("query {}", q.name));
    }
    parts.join(" ")
}

fn route(r: &Route) -> Value {
    let mut out = json!({"name": r.name, "match": route_match(r)});
    match &r.action {
        Some(Action::Route(a)) => {
            out["action"] = json!(match &a.cluster_specifier {
                Some(ClusterSpecifier::Cluster(c)) => format!("cluster {c}"),
                Some(ClusterSpecifier::WeightedClusters(w)) => format!(
                    "weighted {}",
                    w.clusters
                        .iter()
                        .map(|c| format!("{}:{}", c.name, c.weight.map_or(0, |w| w.value)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => "?".into(),
            });
            out["timeout_ms"] = json!(millis(a.timeout.as_ref()));
            out["retries"] = json!(a.retry_policy.as_ref().map(|p| format!(
                "{}x {}",
                p.num_retries.map_or(1, |n| n.value),
                p.retry_on
            )));
        }
        Some(Action::Redirect(_)) => out["action"] = json!("redirect"),
        Some(Action::DirectResponse(d)) => out["action"] = json!(format!("direct {}", d.status)),
        _ => {}
    }
    let mut per_filter: Vec<&String> = r.typed_per_filter_config.keys().collect();
    per_filter.sort();
    if !per_filter.is_empty() {
        out["per_filter_config"] = json!(per_filter);
    }
    out
}

pub fn route_configuration(rc: &RouteConfiguration) -> Value {
    let hosts: Vec<Value> = rc
        .virtual_hosts
        .iter()
        .map(|vh| {
            let mut per_filter: Vec<&String> = vh.typed_per_filter_config.keys().collect();
            per_filter.sort();
            json!({
                "name": vh.name,
                "domains": vh.domains,
                "routes": vh.routes.iter().map(route).collect::<Vec<_>>(),
                "per_filter_config": per_filter,
            })
        })
        .collect();
    json!({"name": rc.name, "virtual_hosts": hosts})
}

pub fn cluster(c: &Cluster) -> Value {
    let lb = LbPolicy::try_from(c.lb_policy)
        .map_or_else(|_| c.lb_policy.to_string(), |p| p.as_str_name().to_string());
    let th = c
        .circuit_breakers
        .as_ref()
        .and_then(|cb| cb.thresholds.first());
    let v = |x: Option<envoy_types::pb::google::protobuf::UInt32Value>| x.map(|x| x.value);
    let mut out = json!({
        "name": c.name,
        "lb": lb,
        "connect_timeout_ms": millis(c.connect_timeout.as_ref()),
        "circuit_breakers": th.map(|t| json!({
            "max_connections": v(t.max_connections),
            "max_pending_requests": v(t.max_pending_requests),
            "max_requests": v(t.max_requests),
            "max_retries": v(t.max_retries),
        })),
    });
    if let Some(o) = &c.outlier_detection {
        out["outlier_detection"] = json!({
            "consecutive_5xx": v(o.consecutive_5xx),
            "consecutive_gateway_failure": v(o.consecutive_gateway_failure),
            "interval_ms": millis(o.interval.as_ref()),
            "base_ejection_ms": millis(o.base_ejection_time.as_ref()),
            "max_ejection_percent": v(o.max_ejection_percent),
        });
    }
    out
}

pub fn endpoints(cla: &ClusterLoadAssignment) -> Value {
    let addresses: Vec<String> = cla
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(ep)) => Some(socket(ep.address.as_ref())),
            _ => None,
        })
        .collect();
    json!({"cluster": cla.cluster_name, "addresses": addresses})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::waypoint::{tests::state_with, translate};

    #[test]
    fn waypoint_resources_read_like_the_waypoint_dump() {
        let t = translate(&state_with(&["002-02", "003-07"]), "istio-system");
        let l = listener(&t.listeners["waypoint/tutorial/wp"]);
        assert_eq!(l["address"], "0.0.0.0:15080");
        assert_eq!(
            l["http_filters"],
            json!(["envoy.filters.http.fault", "envoy.filters.http.router"])
        );
        let rc = route_configuration(&t.routes["waypoint/tutorial/wp"]);
        let reviews = rc["virtual_hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "reviews.tutorial.svc.cluster.local:9080")
            .unwrap();
        assert_eq!(reviews["routes"][0]["match"], "prefix=/");
        assert_eq!(
            reviews["routes"][0]["action"],
            "weighted outbound|9080|v1|reviews.tutorial.svc.cluster.local:30, outbound|9080|v2|reviews.tutorial.svc.cluster.local:70"
        );
        assert_eq!(reviews["routes"][0]["timeout_ms"], 0);
        let c = cluster(&t.clusters["outbound|8000||httpbin.default.svc.cluster.local"]);
        assert_eq!(c["lb"], "LEAST_REQUEST");
        assert_eq!(c["circuit_breakers"]["max_connections"], 1);
        assert_eq!(c["circuit_breakers"]["max_requests"], u32::MAX);
        assert_eq!(c["outlier_detection"]["base_ejection_ms"], 180_000);
        let e = endpoints(&t.endpoints["outbound|8000||httpbin.default.svc.cluster.local"]);
        assert_eq!(e["addresses"], json!(["10.244.6.1:80"]));
    }
}
