//! Envoy's admin API as tests read it: one request from inside a network
//! namespace, `/stats` values (accepted and rejected xDS updates per type)
//! and `/config_dump` sections (listeners, routes, clusters, endpoints).
use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::Path,
    time::Duration,
};

use anyhow::Context as _;
use serde_json::Value;

/// A bodyless HTTP/1.1 request (`Connection: close`; Envoy refuses
/// HTTP/1.0 by default) to `addr` from inside `netns` (or here). Bodies of
/// chunked answers are de-chunked.
pub fn admin_request(
    netns: Option<&Path>,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut conn = match netns {
        Some(ns) => crate::netns::connect_in(ns, addr, timeout),
        None => std::net::TcpStream::connect_timeout(&addr, timeout),
    }
    .with_context(|| format!("connecting to admin {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed HTTP answer from {addr}{path}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in the answer from {addr}{path}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body).with_context(|| format!("bad chunked body from {addr}{path}"))?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = raw.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        raw = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// The four Envoy xDS types a waypoint consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdsKind {
    Lds,
    Rds,
    Cds,
    Eds,
}

/// Envoy's `/stats` values by name.
#[derive(Debug, Clone, Default)]
pub struct Stats(pub BTreeMap<String, u64>);

impl Stats {
    /// From `{"stats":[{"name":…,"value":…}, {"histograms":…}]}`; histograms
    /// are skipped.
    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let list = v["stats"]
            .as_array()
            .context("envoy stats JSON has no `stats` array")?;
        Ok(Self(
            list.iter()
                .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["value"].as_u64()?)))
                .collect(),
        ))
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    /// Non-zero `*.update_rejected` counters (any xDS subscription).
    pub fn rejected(&self) -> Vec<(String, u64)> {
        self.0
            .iter()
            .filter(|(k, v)| k.ends_with(".update_rejected") && **v > 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Accepted updates of one xDS type, summed over its subscriptions:
    /// `listener_manager.lds.*`, `cluster_manager.cds.*`,
    /// `http.<prefix>.rds.<route config>.*`, `cluster.<name>.*` (EDS counts
    /// per cluster, without an `eds` segment).
    pub fn successes(&self, kind: XdsKind) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                let Some(scope) = k.strip_suffix(".update_success") else {
                    return false;
                };
                match kind {
                    XdsKind::Lds => scope == "listener_manager.lds",
                    XdsKind::Cds => scope == "cluster_manager.cds",
                    XdsKind::Rds => scope.starts_with("http.") && scope.contains(".rds."),
                    XdsKind::Eds => scope.starts_with("cluster.") && scope != "cluster.xds",
                }
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// Envoy's `/config_dump` with readers for what tests compare.
#[derive(Debug, Clone)]
pub struct ConfigDump(pub Value);

impl ConfigDump {
    fn section(&self, type_suffix: &str) -> Option<&Value> {
        // `.RoutesConfigDump`, not `ScopedRoutesConfigDump`.
        let suffix = format!(".{type_suffix}");
        self.0["configs"]
            .as_array()?
            .iter()
            .find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(&suffix)))
    }

    /// Names of the active dynamic listeners.
    pub fn listeners(&self) -> Vec<String> {
        self.names("ListenersConfigDump", "dynamic_listeners", |l| {
            l["active_state"]["listener"]["name"].as_str()
        })
    }

    /// Names of the dynamic route configurations.
    pub fn route_configs(&self) -> Vec<String> {
        self.names("RoutesConfigDump", "dynamic_route_configs", |r| {
            r["route_config"]["name"].as_str()
        })
    }

    /// Names of the dynamic (active) clusters.
    pub fn clusters(&self) -> Vec<String> {
        self.names("ClustersConfigDump", "dynamic_active_clusters", |c| {
            c["cluster"]["name"].as_str()
        })
    }

    /// Route names per virtual host over all dynamic route configurations.
    pub fn route_names(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let configs = self
            .section("RoutesConfigDump")
            .and_then(|s| s["dynamic_route_configs"].as_array());
        for rc in configs.into_iter().flatten() {
            add_vhost_route_names(&rc["route_config"]["virtual_hosts"], &mut out);
        }
        out
    }

    /// Endpoint addresses (`ip:port`) per cluster, from the EDS section.
    pub fn endpoints(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let Some(list) = self
            .section("EndpointsConfigDump")
            .and_then(|s| s["dynamic_endpoint_configs"].as_array())
        else {
            return out;
        };
        for cfg in list {
            let cla = &cfg["endpoint_config"];
            let Some(name) = cla["cluster_name"].as_str() else {
                continue;
            };
            let addrs = cla["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|l| l["lb_endpoints"].as_array().into_iter().flatten())
                .filter_map(|e| {
                    let sa = &e["endpoint"]["address"]["socket_address"];
                    Some(format!(
                        "{}:{}",
                        sa["address"].as_str()?,
                        sa["port_value"].as_u64()?
                    ))
                })
                .collect();
            out.insert(name.to_string(), addrs);
        }
        out
    }

    fn names(
        &self,
        section: &str,
        list: &str,
        name: impl Fn(&Value) -> Option<&str>,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .section(section)
            .and_then(|s| s[list].as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| name(v).map(str::to_string))
            .collect();
        out.sort();
        out
    }
}

/// `{vhost name: [route names]}` of a JSON list of virtual hosts (Envoy's
/// `/config_dump` and mesh-waypoint's share this shape).
pub fn add_vhost_route_names(vhosts: &Value, out: &mut BTreeMap<String, Vec<String>>) {
    for vh in vhosts.as_array().into_iter().flatten() {
        let Some(name) = vh["name"].as_str() else {
            continue;
        };
        let routes = vh["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["name"].as_str().unwrap_or("").to_string())
            .collect();
        out.insert(name.to_string(), routes);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk("4\r\nLIVE\r\n3\r\nabc\r\n0\r\n\r\n").as_deref(),
            Some("LIVEabc")
        );
        assert_eq!(dechunk("a\r\nshort\r\n"), None);
    }

    #[test]
    fn stats_count_successes_per_kind_and_find_rejections() {
        let v = json!({"stats": [
            {"name": "listener_manager.lds.update_success", "value": 2},
            {"name": "listener_manager.lds.update_rejected", "value": 0},
            {"name": "cluster_manager.cds.update_success", "value": 3},
            {"name": "http.waypoint.rds.waypoint/default/waypoint.update_success", "value": 1},
            {"name": "cluster.outbound|9080||reviews.default.svc.cluster.local.update_success", "value": 4},
            {"name": "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.update_rejected", "value": 1},
            {"name": "cluster.xds.update_success", "value": 9},
            {"histograms": {}},
        ]});
        let stats = Stats::from_json(&v).unwrap();
        assert_eq!(stats.successes(XdsKind::Lds), 2);
        assert_eq!(stats.successes(XdsKind::Cds), 3);
        assert_eq!(stats.successes(XdsKind::Rds), 1);
        assert_eq!(
            stats.successes(XdsKind::Eds),
            4,
            "the static xds cluster is not EDS"
        );
        assert_eq!(
            stats.rejected(),
            vec![(
                "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.update_rejected"
                    .to_string(),
                1
            )]
        );
    }

    #[test]
    fn config_dump_names_and_endpoints() {
        let dump = ConfigDump(json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
             "dynamic_listeners": [{"name": "waypoint/default/waypoint",
                "active_state": {"listener": {"name": "waypoint/default/waypoint"}}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
             "dynamic_active_clusters": [{"cluster": {"name": "b"}}, {"cluster": {"name": "a"}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump"},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
             "dynamic_route_configs": [{"route_config": {"name": "waypoint/default/waypoint",
                "virtual_hosts": [{"name": "reviews.default.svc.cluster.local:9080",
                    "routes": [{"name": "default/reviews/0"}, {"match": {"prefix": "/"}}]}]}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
             "dynamic_endpoint_configs": [{"endpoint_config": {"cluster_name": "a",
                "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "10.244.1.3", "port_value": 9080}}}},
                    {"endpoint": {"address": {"socket_address": {"address": "10.244.1.4", "port_value": 9080}}}}]}]}}]},
        ]}));
        assert_eq!(dump.listeners(), vec!["waypoint/default/waypoint"]);
        assert_eq!(dump.route_configs(), vec!["waypoint/default/waypoint"]);
        assert_eq!(dump.clusters(), vec!["a", "b"]);
        assert_eq!(
            dump.route_names()["reviews.default.svc.cluster.local:9080"],
            vec!["default/reviews/0", ""]
        );
        assert_eq!(
            dump.endpoints()["a"],
            vec!["10.244.1.3:9080", "10.244.1.4:9080"]
        );
    }
}
