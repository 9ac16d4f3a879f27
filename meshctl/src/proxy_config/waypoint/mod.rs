//! `meshctl proxy-config listener|route|cluster|endpoint <waypoint>`: a
//! waypoint's Envoy-style configuration from its admin `/config_dump`
//! (`listeners`, `routes`, `clusters`, `endpoints`; shapes in
//! docs/contracts/waypoint-admin.md), as istioctl prints an Envoy's.
//! `--namespace` keeps the services of one namespace, `--address` the
//! endpoints with one IP.
use serde_json::{json, Value};

use super::{Filters, Kind};
use crate::render::{self, Output, Table};

/// Envoy's "unset" threshold as Istio writes it: shown as `-`.
const UNLIMITED: u64 = u32::MAX as u64;

/// Whether `kind` is read from a waypoint's `/config_dump`.
pub fn is_waypoint_kind(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Listener | Kind::Route | Kind::Cluster | Kind::Endpoint
    )
}

/// The text `proxy-config <kind>` prints for a waypoint dump `doc`.
pub fn render(kind: Kind, doc: &Value, f: &Filters, output: Output) -> String {
    let (table, data, what) = match kind {
        Kind::Listener => {
            let (t, d) = listeners(doc, f);
            (t, d, "listeners")
        }
        Kind::Route => {
            let (t, d) = routes(doc, f);
            (t, d, "routes")
        }
        Kind::Cluster => {
            let (t, d) = clusters(doc, f);
            (t, d, "clusters")
        }
        _ => {
            let (t, d) = endpoints(doc, f);
            (t, d, "endpoints")
        }
    };
    if let Some(text) = render::data(&json!(data), output) {
        return text;
    }
    if table.is_empty() {
        let hint = if doc.get(what).is_none() {
            format!(" (the dump has no `{what}`: is this a waypoint's admin endpoint?)")
        } else {
            String::new()
        };
        return format!("No {what} match{hint}.\n");
    }
    table.render(render::WIDTH)
}

fn list<'a>(doc: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    doc[key].as_array().into_iter().flatten()
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null => "-".into(),
        Value::String(_) => "-".into(),
        other => other.to_string(),
    }
}

/// The parts of Istio's cluster name `outbound|<port>|<subset>|<fqdn>`.
struct ClusterName<'a> {
    direction: &'a str,
    port: &'a str,
    subset: &'a str,
    fqdn: &'a str,
}

fn parse_cluster(name: &str) -> Option<ClusterName<'_>> {
    let mut parts = name.splitn(4, '|');
    let direction = parts.next()?;
    Some(ClusterName {
        direction,
        port: parts.next()?,
        subset: parts.next()?,
        fqdn: parts.next()?,
    })
}

/// `reviews.default.svc.cluster.local` → `default`.
fn fqdn_namespace(fqdn: &str) -> Option<&str> {
    fqdn.split('.').nth(1)
}

/// istioctl's `--port`, `--direction`, `--fqdn` against a cluster name;
/// a name not in `<direction>|<port>|<subset>|<fqdn>` form passes only
/// when none is given.
fn cluster_ok(f: &Filters, name: &str) -> bool {
    if f.port.is_none() && f.direction.is_none() && f.fqdn.is_none() {
        return true;
    }
    let Some(c) = parse_cluster(name) else {
        return false;
    };
    f.port.is_none_or(|p| c.port == p.to_string())
        && f.direction.is_none_or(|d| c.direction == d.as_str())
        && f.fqdn.as_deref().is_none_or(|h| fqdn_matches(h, c.fqdn))
}

/// `reviews`, `reviews.default` and the full name all name
/// `reviews.default.svc.cluster.local`.
fn fqdn_matches(given: &str, fqdn: &str) -> bool {
    fqdn == given || fqdn.starts_with(&format!("{given}."))
}

/// The port of `ip:port` / `[v6]:port`.
fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

fn namespace_ok(f: &Filters, fqdn: &str) -> bool {
    f.namespace
        .as_deref()
        .is_none_or(|ns| fqdn_namespace(fqdn) == Some(ns))
}

/// `reviews.default.svc.cluster.local` → `reviews.default` (other hosts,
/// e.g. ServiceEntry names, unchanged): the suffix says nothing in a table.
fn short_host(fqdn: &str) -> &str {
    fqdn.strip_suffix(".svc.cluster.local").unwrap_or(fqdn)
}

/// The service FQDN of a virtual host named `<fqdn>:<port>`.
fn vhost_fqdn(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(host, _)| host)
}

fn listeners(doc: &Value, f: &Filters) -> (Table, Vec<Value>) {
    // istioctl's `--port` (the listener's); a waypoint's listeners are all
    // inbound, so `--direction outbound` keeps none.
    let kept: Vec<Value> = list(doc, "listeners")
        .filter(|l| {
            f.port
                .is_none_or(|p| port_of(&text(l, "address")) == Some(p))
        })
        .filter(|_| f.direction != Some(super::Direction::Outbound))
        .cloned()
        .collect();
    let doc = &json!({"listeners": kept});
    let gateway = list(doc, "listeners").any(|l| l.get("filter_chains").is_some());
    if gateway {
        return gateway_listeners(doc);
    }
    let mut table = Table::new(["NAME", "ADDRESS", "ROUTE-CONFIG", "HTTP-FILTERS"]);
    let mut data = vec![];
    for l in list(doc, "listeners") {
        table.row([
            text(l, "name"),
            text(l, "address"),
            text(l, "route_config"),
            http_filters(l),
        ]);
        data.push(l.clone());
    }
    (table, data)
}

/// `fault,rbac,router` (the `envoy.filters.http.` prefix says nothing).
fn http_filters(v: &Value) -> String {
    let filters: Vec<&str> = list(v, "http_filters")
        .filter_map(Value::as_str)
        .map(|f| f.strip_prefix("envoy.filters.http.").unwrap_or(f))
        .collect();
    if filters.is_empty() {
        "-".into()
    } else {
        filters.join(",")
    }
}

/// An ingress gateway's listeners: one row per filter chain, with its SNI
/// names, whether it terminates TLS, and where it goes (the route
/// configuration of an HTTP chain, the clusters of a `tcp_proxy`).
fn gateway_listeners(doc: &Value) -> (Table, Vec<Value>) {
    let mut table = Table::new(["NAME", "ADDRESS", "SNI", "TLS", "CHAIN", "HTTP-FILTERS"]);
    let mut data = vec![];
    for l in list(doc, "listeners") {
        for c in list(l, "filter_chains") {
            let sni: Vec<&str> = list(c, "server_names").filter_map(Value::as_str).collect();
            let tcp: Vec<String> = list(c, "tcp_proxy")
                .map(|t| {
                    let cluster = shorten_clusters(&text(t, "cluster"));
                    match t["weight"].as_u64() {
                        Some(w) if list(c, "tcp_proxy").count() > 1 => format!("{cluster}={w}"),
                        _ => cluster,
                    }
                })
                .collect();
            let chain = if tcp.is_empty() {
                format!("routes {}", text(c, "route_config"))
            } else {
                format!("tcp {}", tcp.join(","))
            };
            let tls = match (c["tls"].as_bool(), tcp.is_empty()) {
                (Some(true), _) => "terminate",
                (_, false) if !sni.is_empty() => "passthrough",
                _ => "-",
            };
            table.row([
                text(l, "name"),
                text(l, "address"),
                if sni.is_empty() {
                    "*".into()
                } else {
                    sni.join(",")
                },
                tls.to_string(),
                chain,
                http_filters(c),
            ]);
        }
        data.push(l.clone());
    }
    (table, data)
}

fn routes(doc: &Value, f: &Filters) -> (Table, Vec<Value>) {
    // Domains and retry conditions are in `-o json`; MATCH and ACTION give
    // up their middles evenly when the table is too wide.
    let mut table = Table::new([
        "ROUTE",
        "VIRTUAL-HOST",
        "MATCH",
        "ACTION",
        "TIMEOUT",
        "RETRIES",
    ]);
    let mut data = vec![];
    for rc in list(doc, "routes") {
        for vh in list(rc, "virtual_hosts") {
            let name = text(vh, "name");
            let fqdn = vhost_fqdn(&name);
            if !namespace_ok(f, fqdn) {
                continue;
            }
            let shown = format!("{}{}", short_host(fqdn), &name[fqdn.len()..]);
            let routes: Vec<&Value> = list(vh, "routes").collect();
            if routes.is_empty() {
                table.row(["-", &shown, "-", "404 (no route)", "-", "-"]);
            }
            for r in routes {
                let timeout = r["timeout_ms"]
                    .as_u64()
                    .filter(|ms| *ms > 0)
                    .map_or_else(|| "-".into(), seconds);
                // `3x 5xx,connect-failure` → `3x`: the count is what differs.
                let retries = r["retries"]
                    .as_str()
                    .and_then(|t| t.split_whitespace().next())
                    .unwrap_or("-");
                table.row([
                    text(r, "name"),
                    shown.clone(),
                    text(r, "match"),
                    shorten_clusters(&text(r, "action")),
                    timeout,
                    retries.to_string(),
                ]);
            }
            data.push(json!({"route_config": rc["name"], "virtual_host": vh}));
        }
    }
    (table, data)
}

/// `outbound|9080|v1|reviews.default.svc.cluster.local:30,` inside an
/// action becomes `reviews.default:9080/v1=30,`, so the action fits a column.
fn shorten_clusters(action: &str) -> String {
    action
        .split(' ')
        .map(|word| {
            if !word.starts_with("outbound|") {
                return word.to_string();
            }
            // The FQDN ends at a weight (`:30`) or a list comma.
            let last_bar = word.rfind('|').unwrap_or(0);
            let end = word[last_bar..]
                .find([':', ','])
                .map_or(word.len(), |i| last_bar + i);
            let (core, tail) = word.split_at(end);
            match parse_cluster(core) {
                Some(c) => {
                    let svc = short_host(c.fqdn);
                    let subset = if c.subset.is_empty() {
                        String::new()
                    } else {
                        format!("/{}", c.subset)
                    };
                    // `:30,` (a weight) reads `=30,` after the port.
                    format!("{svc}:{}{subset}{}", c.port, tail.replacen(':', "=", 1))
                }
                None => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `max_connections 1, max_pending_requests 1` style summary without the
/// unlimited ones; `-` when all are unlimited.
fn circuit_breakers(cb: &Value) -> String {
    let parts: Vec<String> = [
        ("max_connections", "conn"),
        ("max_pending_requests", "pending"),
        ("max_requests", "req"),
        ("max_retries", "retries"),
    ]
    .iter()
    .filter_map(|(key, label)| {
        let v = cb[*key].as_u64()?;
        (v != UNLIMITED).then(|| format!("{label}={v}"))
    })
    .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}

fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `5xx=1 every 10s eject 180s max 100%`, `-` when off.
fn outlier(od: &Value) -> String {
    if !od.is_object() {
        return "-".into();
    }
    let mut parts = vec![];
    if let Some(n) = od["consecutive_5xx"].as_u64().filter(|n| *n > 0) {
        parts.push(format!("5xx={n}"));
    }
    if let Some(n) = od["consecutive_gateway_failure"]
        .as_u64()
        .filter(|n| *n > 0)
    {
        parts.push(format!("gw={n}"));
    }
    if parts.is_empty() {
        return "-".into();
    }
    if let Some(ms) = od["interval_ms"].as_u64() {
        parts.push(format!("every {}", seconds(ms)));
    }
    if let Some(ms) = od["base_ejection_ms"].as_u64() {
        parts.push(format!("eject {}", seconds(ms)));
    }
    if let Some(p) = od["max_ejection_percent"].as_u64() {
        parts.push(format!("max {p}%"));
    }
    parts.join(" ")
}

/// Clusters are listed by service, port, subset.
type SortKey = (String, u32, String);

fn clusters(doc: &Value, f: &Filters) -> (Table, Vec<Value>) {
    let mut table = Table::new([
        "SERVICE",
        "PORT",
        "SUBSET",
        "LB",
        "CIRCUIT-BREAKERS",
        "OUTLIER-DETECTION",
    ])
    .squeeze_first(5);
    let mut data = vec![];
    let mut rows: Vec<(SortKey, Vec<String>, Value)> = vec![];
    for c in list(doc, "clusters") {
        let name = text(c, "name");
        let (fqdn, port, subset) = match parse_cluster(&name) {
            Some(p) => (p.fqdn.to_string(), p.port.to_string(), p.subset.to_string()),
            None => (name.clone(), "-".into(), String::new()),
        };
        if !namespace_ok(f, &fqdn) || !cluster_ok(f, &name) {
            continue;
        }
        let key = (fqdn.clone(), port.parse().unwrap_or(0), subset.clone());
        let row = vec![
            short_host(&fqdn).to_string(),
            port,
            if subset.is_empty() {
                "-".into()
            } else {
                subset
            },
            text(c, "lb"),
            circuit_breakers(&c["circuit_breakers"]),
            outlier(&c["outlier_detection"]),
        ];
        rows.push((key, row, c.clone()));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, row, raw) in rows {
        table.row(row);
        data.push(raw);
    }
    (table, data)
}

fn endpoints(doc: &Value, f: &Filters) -> (Table, Vec<Value>) {
    let mut table = Table::new([
        "ENDPOINT", "STATUS", "HBONE", "ACTIVE", "EJECTED", "WORKLOAD", "CLUSTER",
    ])
    .squeeze_first(5);
    let mut data = vec![];
    for e in list(doc, "endpoints") {
        let cluster = text(e, "cluster");
        let address = text(e, "address");
        let fqdn = parse_cluster(&cluster).map_or(cluster.as_str(), |c| c.fqdn);
        let ip = address
            .rsplit_once(':')
            .map_or(address.as_str(), |(ip, _)| ip);
        let filtered_out = f.port.is_some_and(|p| port_of(&address) != Some(p))
            || f.direction
                .is_some_and(|d| parse_cluster(&cluster).is_none_or(|c| c.direction != d.as_str()))
            || f.fqdn.as_deref().is_some_and(|h| !fqdn_matches(h, fqdn));
        if filtered_out
            || !namespace_ok(f, fqdn)
            || f.address.as_deref().is_some_and(|want| want != ip)
        {
            continue;
        }
        // `Kubernetes//Pod/default/reviews-v1` → `default/reviews-v1`.
        let workload = text(e, "workload");
        let workload = workload
            .strip_prefix("Kubernetes//Pod/")
            .map_or(workload.clone(), str::to_string);
        table.row([
            address.clone(),
            text(e, "health"),
            match e["hbone"].as_bool() {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "-".into(),
            },
            text(e, "active_requests"),
            text(e, "ejections"),
            workload,
            shorten_clusters(&cluster),
        ]);
        data.push(e.clone());
    }
    (table, data)
}

#[cfg(test)]
mod tests;
