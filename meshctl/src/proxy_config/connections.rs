//! `proxy-config connections`: the agent's open connections, then the
//! recently closed ones (newest first), from `/stats/connections`. Each
//! row (state, addresses, route, bytes) is followed by indented lines with
//! the identities and the error, which would not fit beside it.
use serde_json::{json, Value};

use super::{
    dump::{typed, Connection, Connections},
    Filters,
};
use crate::render::{self, Output, Table};

/// `ns/sa` of a SPIFFE identity, `-` for none (plaintext).
fn who(identity: &str) -> String {
    match identity.split_once("/ns/") {
        Some((_, rest)) => rest.replacen("/sa/", "/", 1),
        None if identity.is_empty() => "-".into(),
        None => identity.to_string(),
    }
}

fn ip_of(addr: &str) -> String {
    addr.parse::<std::net::SocketAddr>()
        .map_or(addr.to_string(), |a| a.ip().to_string())
}

fn keep(c: &Connection, f: &Filters) -> bool {
    let address_ok = f
        .address
        .as_deref()
        .is_none_or(|ip| ip_of(&c.source) == ip || ip_of(&c.original_destination) == ip);
    let namespace_ok = f.namespace.as_deref().is_none_or(|ns| {
        let marker = format!("/ns/{ns}/");
        c.source_identity.contains(&marker) || c.destination_identity.contains(&marker)
    });
    address_ok && namespace_ok
}

fn row(state: &str, c: &Connection) -> Vec<String> {
    let route = match (c.direction.as_str(), c.route.as_str()) {
        ("", "") => "-".to_string(),
        ("", r) | (r, "") => r.to_string(),
        (d, r) => format!("{d}/{r}"),
    };
    vec![
        state.to_string(),
        format!("{} → {}", c.source, c.original_destination),
        route,
        format!(
            "↑{} ↓{}",
            render::bytes(c.bytes_sent),
            render::bytes(c.bytes_received)
        ),
    ]
}

/// The lines under a row: identities (who talked to whom) and the error,
/// too long to share a 100-column line with the addresses.
fn details(c: &Connection) -> Vec<String> {
    let mut lines = vec![format!(
        "identities: {} → {}",
        who(&c.source_identity),
        who(&c.destination_identity)
    )];
    if !c.error.is_empty() {
        lines.push(format!("error: {}", c.error));
    }
    lines
        .into_iter()
        .map(|l| render::truncate(&format!("{INDENT}{l}"), render::WIDTH))
        .collect()
}

/// Detail lines start under the second column.
const INDENT: &str = "        ";

pub(super) fn render(
    doc: &Value,
    f: &Filters,
    output: Output,
) -> Result<String, serde_json::Error> {
    let stats: Connections = serde_json::from_value(doc.clone())?;
    let mut active = typed::<Connection>(&stats.active);
    active.sort_by_key(|(c, _)| c.id);
    let mut recent = typed::<Connection>(&stats.recent);
    recent.sort_by_key(|(c, _)| std::cmp::Reverse(c.opened_at_ms + c.duration_ms));
    let active: Vec<_> = active.into_iter().filter(|(c, _)| keep(c, f)).collect();
    let recent: Vec<_> = recent.into_iter().filter(|(c, _)| keep(c, f)).collect();
    let data = json!({
        "totals": stats.totals,
        "active": active.iter().map(|(_, v)| (*v).clone()).collect::<Vec<_>>(),
        "recent": recent.iter().map(|(_, v)| (*v).clone()).collect::<Vec<_>>(),
    });
    if let Some(text) = render::data(&data, output) {
        return Ok(text);
    }
    let mut table = Table::new(["STATE", "SOURCE → DESTINATION", "ROUTE", "BYTES"]);
    let mut extra = vec![];
    for (state, list) in [("open", &active), ("closed", &recent)] {
        for (c, _) in list.iter() {
            table.row(row(state, c));
            extra.push(details(c));
        }
    }
    let mut out = String::new();
    if table.is_empty() {
        out.push_str("No connections match.\n");
    } else {
        let rendered = table.render(render::WIDTH);
        let mut lines = rendered.lines();
        out.push_str(lines.next().unwrap_or(""));
        out.push('\n');
        for (line, details) in lines.zip(&extra) {
            out.push_str(line);
            out.push('\n');
            for d in details {
                out.push_str(d);
                out.push('\n');
            }
        }
    }
    let total = |k: &str| stats.totals.get(k).and_then(Value::as_u64).unwrap_or(0);
    if stats.totals.is_object() {
        out.push_str(&format!(
            "Totals: {} accepted, {} active, {} completed, ↑{} ↓{}\n",
            total("accepted"),
            total("active"),
            total("completed"),
            render::bytes(total("bytes_sent")),
            render::bytes(total("bytes_received")),
        ));
    }
    Ok(out)
}
