//! `meshctl proxy-status`: which agents are connected to the control plane
//! and whether each has the current configuration, per xDS type — from the
//! control plane's `/debug/syncz` (shape in docs/contracts/control-admin.md).
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::render::{self, Output, Table};

/// Column order and headers of the types we know; others follow, named by
/// the last segment of their type URL.
const KNOWN_TYPES: &[(&str, &str)] = &[
    ("type.googleapis.com/istio.workload.Address", "ADDRESS"),
    ("type.googleapis.com/istio.security.Authorization", "AUTHZ"),
];

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Syncz {
    pub server_version: String,
    #[serde(default)]
    pub proxies: Vec<Proxy>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Proxy {
    pub node_id: String,
    #[serde(default)]
    pub stream_id: u64,
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub connected_at_unix: u64,
    #[serde(default)]
    pub types: BTreeMap<String, TypeSync>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TypeSync {
    pub status: String,
    #[serde(default)]
    pub last_sent_version: String,
    #[serde(default)]
    pub resources: u64,
    #[serde(default)]
    pub last_nack: Option<Nack>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Nack {
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub message: String,
}

/// `ADDRESS` for a known type URL, else the type's last name segment
/// upper-cased (`…/envoy.config.cluster.v3.Cluster` → `CLUSTER`).
pub fn short_type(type_url: &str) -> String {
    KNOWN_TYPES
        .iter()
        .find(|(url, _)| *url == type_url)
        .map(|(_, short)| short.to_string())
        .unwrap_or_else(|| {
            type_url
                .rsplit(['.', '/'])
                .next()
                .unwrap_or(type_url)
                .to_ascii_uppercase()
        })
}

/// The type URLs to show as columns: the known ones always, then any other
/// a proxy subscribed to.
fn columns(syncz: &Syncz) -> Vec<String> {
    let mut urls: Vec<String> = KNOWN_TYPES.iter().map(|(u, _)| u.to_string()).collect();
    for p in &syncz.proxies {
        for url in p.types.keys() {
            if !urls.contains(url) {
                urls.push(url.clone());
            }
        }
    }
    urls
}

/// The table, then one line per NACK saying why, then the server version.
pub fn render_table(syncz: &Syncz) -> String {
    let urls = columns(syncz);
    let headers = ["NAME".to_string(), "PEER".to_string()]
        .into_iter()
        .chain(urls.iter().map(|u| short_type(u)))
        .chain(["VERSION".to_string()]);
    let mut table = Table::new(headers);
    let mut nacks = vec![];
    for p in &syncz.proxies {
        let name = if p.node_id.is_empty() {
            format!("(no node id, stream {})", p.stream_id)
        } else {
            p.node_id.clone()
        };
        let mut row = vec![name.clone(), p.peer.clone().unwrap_or_else(|| "-".into())];
        for url in &urls {
            row.push(match p.types.get(url) {
                Some(t) => t.status.clone(),
                None => "-".into(),
            });
            if let Some(t) = p.types.get(url) {
                if t.status == "NACKED" {
                    let why = t.last_nack.as_ref().map_or("", |n| n.message.as_str());
                    nacks.push(format!("{name} {}: NACKED: {why}", short_type(url)));
                }
            }
        }
        // The oldest version among the types: what the proxy is at.
        let version = p
            .types
            .values()
            .filter(|t| !t.last_sent_version.is_empty())
            .map(|t| t.last_sent_version.as_str())
            .min_by_key(|v| v.parse::<u64>().unwrap_or(0))
            .unwrap_or("-");
        row.push(version.to_string());
        table.row(row);
    }
    let mut out = if syncz.proxies.is_empty() {
        "No agent is connected to the control plane.\n".to_string()
    } else {
        table.render(render::WIDTH)
    };
    for line in nacks {
        out.push_str(&render::truncate(&line, render::WIDTH));
        out.push('\n');
    }
    out.push_str(&format!(
        "Control plane version: {}\n",
        syncz.server_version
    ));
    out
}

/// What `proxy-status` prints for `doc` (the raw `/debug/syncz` JSON).
pub fn render(doc: &serde_json::Value, output: Output) -> Result<String, serde_json::Error> {
    if let Some(text) = render::data(doc, output) {
        return Ok(text);
    }
    let syncz: Syncz = serde_json::from_value(doc.clone())?;
    Ok(render_table(&syncz))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> serde_json::Value {
        json!({"server_version": "7", "proxies": [
            {"node_id": "agent~node1~mesh", "stream_id": 3, "peer": "10.0.0.1:40000",
             "connected_at_unix": 1_700_000_000u64,
             "types": {
                "type.googleapis.com/istio.workload.Address":
                    {"status": "SYNCED", "last_sent_version": "7", "resources": 12, "last_nack": null},
                "type.googleapis.com/istio.security.Authorization":
                    {"status": "NACKED", "last_sent_version": "6", "resources": 1,
                     "last_nack": {"nonce": "n", "message": "policy ns/x: rule 0: bad CIDR", "at_unix": 0}}}},
            {"node_id": "agent~node2~mesh", "stream_id": 4, "peer": "10.0.0.2:40001",
             "types": {
                "type.googleapis.com/istio.workload.Address":
                    {"status": "STALE", "last_sent_version": "6", "resources": 11, "last_nack": null},
                "type.googleapis.com/envoy.config.cluster.v3.Cluster":
                    {"status": "NOT SENT", "last_sent_version": "", "resources": 0, "last_nack": null}}}
        ]})
    }

    #[test]
    fn table_cells() {
        let out = render(&fixture(), Output::Table).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let cells = |l: &str| -> Vec<String> {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        };
        assert_eq!(
            cells(lines[0]),
            ["NAME", "PEER", "ADDRESS", "AUTHZ", "CLUSTER", "VERSION"]
        );
        assert_eq!(
            cells(lines[1]),
            [
                "agent~node1~mesh",
                "10.0.0.1:40000",
                "SYNCED",
                "NACKED",
                "-",
                "6"
            ]
        );
        assert_eq!(
            cells(lines[2]),
            [
                "agent~node2~mesh",
                "10.0.0.2:40001",
                "STALE",
                "-",
                "NOT SENT",
                "6"
            ]
        );
        assert_eq!(
            lines[3],
            "agent~node1~mesh AUTHZ: NACKED: policy ns/x: rule 0: bad CIDR"
        );
        assert_eq!(lines[4], "Control plane version: 7");
        assert!(lines.iter().all(|l| l.chars().count() <= 100));
    }

    #[test]
    fn json_yaml_and_empty() {
        let doc = fixture();
        let json = render(&doc, Output::Json).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            doc
        );
        let yaml = render(&doc, Output::Yaml).unwrap();
        assert!(yaml.contains("server_version: '7'"), "{yaml}");
        let empty = render(
            &json!({"server_version": "1", "proxies": []}),
            Output::Table,
        )
        .unwrap();
        assert_eq!(
            empty,
            "No agent is connected to the control plane.\nControl plane version: 1\n"
        );
    }
}
