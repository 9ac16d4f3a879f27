//! The `listeners` and `routes` parts of `/config_dump` (contract §4).
use serde_json::{json, Value};

use super::{
    store::ActiveConfig,
    table::{Action, Clusters, PathRedirect, Route},
};

pub fn listeners(cfg: &ActiveConfig) -> Value {
    let Some(l) = &cfg.listener else {
        return json!([]);
    };
    let filters: Vec<&str> = l.filters.iter().map(|f| f.name()).collect();
    json!([{ "name": l.name, "address": l.address, "route_config": cfg.table.name, "http_filters": filters }])
}

pub fn routes(cfg: &ActiveConfig) -> Value {
    if cfg.table.name.is_empty() && cfg.table.vhosts.is_empty() {
        return json!([]);
    }
    let vhosts: Vec<Value> = cfg
        .table
        .vhosts
        .iter()
        .map(|vh| {
            json!({
                "name": vh.name,
                "domains": vh.domains,
                "routes": vh.routes.iter().map(|r| route(r)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!([{ "name": cfg.table.name, "virtual_hosts": vhosts }])
}

fn route(r: &Route) -> Value {
    let mut v = json!({ "name": r.name, "match": r.matcher.describe() });
    let (action, timeout, retries) = match &r.action {
        Action::Forward(f) => {
            let action = match &f.clusters {
                Clusters::One(c) => format!("cluster {c}"),
                Clusters::Weighted(ts) => format!(
                    "weighted {}",
                    ts.iter()
                        .map(|t| format!("{}:{}", t.cluster, t.weight))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let retries = f
                .retry
                .as_ref()
                .map(|rp| format!("{}x {}", rp.num_retries, rp.retry_on_text));
            (action, f.timeout.map(|t| t.as_millis() as u64), retries)
        }
        Action::Redirect(rd) => {
            let path = match &rd.path {
                PathRedirect::Keep => String::new(),
                PathRedirect::Path(p) => format!(" path={p}"),
                PathRedirect::Prefix(p) => format!(" prefix={p}"),
                PathRedirect::Regex(r, s) => format!(" regex={} -> {s}", r.as_str()),
            };
            let host = rd.host.as_deref().unwrap_or("");
            (format!("redirect {} {host}{path}", rd.status), None, None)
        }
        Action::Direct { status, .. } => (format!("direct_response {status}"), None, None),
    };
    v["action"] = json!(action);
    v["timeout_ms"] = json!(timeout.unwrap_or(0));
    if let Some(r) = retries {
        v["retries"] = json!(r);
    }
    if let Action::Forward(f) = &r.action {
        if !f.mirrors.is_empty() {
            v["mirrors"] = json!(f
                .mirrors
                .iter()
                .map(|m| format!("{} {}%", m.cluster, m.fraction.percent()))
                .collect::<Vec<_>>());
        }
    }
    if let Some(fault) = &r.overrides.fault {
        v["fault"] = json!({
            "delay_ms": fault.delay.map(|(d, _)| d.as_millis() as u64),
            "delay_percent": fault.delay.map(|(_, p)| p.percent()),
            "abort": fault.abort.map(|(a, _)| format!("{a:?}")),
            "abort_percent": fault.abort.map(|(_, p)| p.percent()),
        });
    }
    v
}
