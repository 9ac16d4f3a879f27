//! `GET /debug/syncz`: per connected ADS stream and type URL, whether the
//! proxy has what the server currently serves (see
//! [`crate::serve::SyncStatus`]).
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::serve::{ConnectedProxies, ProxyStatus, TypeStatus};

/// Seconds since the Unix epoch (0 for times before it).
pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn type_json(t: &TypeStatus, server_version: u64) -> Value {
    json!({
        "status": t.status(server_version).as_str(),
        "last_sent_version": t.last_sent_version,
        "last_sent_nonce": t.last_sent_nonce,
        "last_sent_at_unix": t.last_sent_at.map(unix),
        "acked": t.acked,
        "resources": t.resources,
        "last_nack": t.last_nack.as_ref().map(|n| json!({
            "nonce": n.nonce,
            "message": n.message,
            "at_unix": unix(n.at),
        })),
    })
}

fn proxy_json(p: &ProxyStatus, server_version: u64) -> Value {
    let types: serde_json::Map<String, Value> = p
        .types
        .iter()
        .map(|(url, t)| (url.clone(), type_json(t, server_version)))
        .collect();
    json!({
        "node_id": p.node_id,
        "stream_id": p.stream_id,
        "peer": p.peer.map(|a| a.to_string()),
        "connected_at_unix": unix(p.connected_at),
        "evaluated_updates": p.evaluated_updates,
        "types": types,
    })
}

/// The whole `/debug/syncz` document.
pub fn syncz(proxies: &ConnectedProxies) -> Value {
    let server_version = proxies.server_version();
    let list: Vec<Value> = proxies
        .list()
        .iter()
        .map(|p| proxy_json(p, server_version))
        .collect();
    json!({
        "server_version": server_version.to_string(),
        "proxies": list,
    })
}
