//! Renderers against contract-shaped fixtures (tests/fixtures/).
use super::*;

const DUMP: &str = include_str!("../../tests/fixtures/agent_config_dump.json");
const CONNECTIONS: &str = include_str!("../../tests/fixtures/agent_connections.json");
const NOW: i64 = 1_700_000_000;

fn show(kind: Kind, f: &Filters) -> String {
    let doc: Value = serde_json::from_str(if kind == Kind::Connections {
        CONNECTIONS
    } else {
        DUMP
    })
    .unwrap();
    let out = render(kind, &doc, f, Output::Table, NOW).unwrap();
    for line in out.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line}");
    }
    out
}

/// The cells of a table line (columns are separated by two or more spaces).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn lines(out: &str) -> Vec<Vec<String>> {
    out.lines().map(cells).collect()
}

#[test]
fn workloads() {
    let out = show(Kind::Workload, &Filters::default());
    let rows = lines(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "NAMESPACE",
            "IP",
            "NODE",
            "IDENTITY",
            "PROTOCOL",
            "POLICIES"
        ]
    );
    assert_eq!(rows.len(), 5, "{out}");
    // The policy names go first, then the widest cells lose their middle.
    assert_eq!(
        rows[1],
        [
            "productpage-…7c8f6-abcde",
            "default",
            "10.244.1.2",
            "node1",
            "default/book…productpage",
            "HBONE",
            "isti…wer"
        ]
    );
    assert_eq!(rows[2][4], "default/bookinfo-reviews");
    assert_eq!(
        rows[3],
        [
            "sleep",
            "legacy",
            "10.244.1.9",
            "node1",
            "legacy/sleep",
            "TCP",
            "-"
        ]
    );
    assert_eq!(
        out.lines().last().unwrap(),
        "IDENTITY is <namespace>/<service account> of spiffe://cluster.local/ns/<namespace>/sa/<sa>"
    );

    let f = Filters {
        namespace: Some("legacy".into()),
        ..Default::default()
    };
    assert_eq!(lines(&show(Kind::Workload, &f)).len(), 3);
    let f = Filters {
        workload: Some("reviews".into()),
        ..Default::default()
    };
    let rows = lines(&show(Kind::Workload, &f));
    assert_eq!(rows.len(), 3);
    assert!(rows[1][0].starts_with("reviews-v1-") && rows[1][0].ends_with("-x2x2x"));
    let f = Filters {
        address: Some("10.244.1.9".into()),
        ..Default::default()
    };
    assert_eq!(lines(&show(Kind::Workload, &f))[1][0], "sleep");
    let f = Filters {
        namespace: Some("nope".into()),
        ..Default::default()
    };
    assert_eq!(show(Kind::Workload, &f), "No workloads match.\n");
}

#[test]
fn services() {
    let rows = lines(&show(Kind::Service, &Filters::default()));
    assert_eq!(rows[0], ["NAME", "NAMESPACE", "VIP", "ENDPOINTS"]);
    assert_eq!(
        rows[1],
        [
            "productpage",
            "default",
            "10.96.0.20:9080",
            "productpage-v1-5d9b7c8f6-abcde:9080"
        ]
    );
    let f = Filters {
        address: Some("10.96.0.21".into()),
        ..Default::default()
    };
    let rows = lines(&show(Kind::Service, &f));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][0], "reviews");
}

#[test]
fn policies() {
    let out = show(Kind::Policy, &Filters::default());
    let rows = lines(&out);
    assert_eq!(
        rows[0],
        ["NAME", "NAMESPACE", "SCOPE", "ACTION", "RULES", "DRY-RUN"]
    );
    assert_eq!(
        rows[1],
        [
            "istio_converted_static_strict",
            "istio-system",
            "WORKLOAD_SELECTOR",
            "DENY",
            "1",
            "no"
        ]
    );
    assert_eq!(
        rows[2],
        [
            "productpage-viewer",
            "default",
            "WORKLOAD_SELECTOR",
            "ALLOW",
            "2",
            "yes"
        ]
    );
    assert_eq!(
        rows[3],
        ["deny-legacy", "legacy", "NAMESPACE", "AUDIT", "0", "no"]
    );
    assert_eq!(out.lines().last().unwrap(), "Kernel deny map: 2 entries");

    // The policies that apply to one workload: listed on it, its
    // namespace's, global ones.
    let f = Filters {
        workload: Some("sleep".into()),
        ..Default::default()
    };
    let names: Vec<String> = lines(&show(Kind::Policy, &f))
        .iter()
        .skip(1)
        .filter(|r| r.len() == 6)
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(names, ["deny-legacy", "global-allow"]);
}

#[test]
fn certificates() {
    let rows = lines(&show(Kind::Certificate, &Filters::default()));
    assert_eq!(rows[0], ["IDENTITY", "SERIAL", "NOT-AFTER"]);
    assert_eq!(
        rows[1],
        [
            "cluster.local/ns/default/sa/bookinfo-productpage",
            "5f3a9c",
            "in 23h"
        ]
    );
    assert_eq!(
        rows[2],
        ["cluster.local/ns/legacy/sa/sleep", "77aa01", "16m ago"]
    );
}

#[test]
fn connections() {
    let out = show(Kind::Connections, &Filters::default());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        cells(lines[0]),
        ["STATE", "SOURCE → DESTINATION", "ROUTE", "BYTES"]
    );
    assert_eq!(
        cells(lines[1]),
        [
            "open",
            "10.244.1.2:40312 → 10.96.0.21:9080",
            "outbound/hbone",
            "↑512B ↓2.0KiB"
        ]
    );
    assert_eq!(
        lines[2],
        "        identities: default/bookinfo-productpage → default/bookinfo-reviews"
    );
    // Recent: newest first, the error under its row.
    assert_eq!(
        cells(lines[3]),
        [
            "closed",
            "10.244.2.7:6000 → 10.244.1.2:9080",
            "inbound/refused",
            "↑0B ↓0B"
        ]
    );
    assert_eq!(
        lines[4],
        "        identities: legacy/sleep → default/bookinfo-productpage"
    );
    assert_eq!(
        lines[5],
        "        error: denied by default/productpage-viewer"
    );
    assert_eq!(cells(lines[6])[1], "10.244.1.9:5000 → 1.1.1.1:443");
    assert_eq!(lines[7], "        identities: - → -");
    assert_eq!(
        *lines.last().unwrap(),
        "Totals: 12 accepted, 1 active, 11 completed, ↑4.0KiB ↓1.5MiB"
    );
    let f = Filters {
        address: Some("1.1.1.1".into()),
        ..Default::default()
    };
    let out = show(Kind::Connections, &f);
    assert_eq!(out.lines().count(), 4, "{out}");
}

#[test]
fn json_output_is_the_filtered_data() {
    let doc: Value = serde_json::from_str(DUMP).unwrap();
    let f = Filters {
        namespace: Some("legacy".into()),
        ..Default::default()
    };
    let out = render(Kind::Workload, &doc, &f, Output::Json, NOW).unwrap();
    let data: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(data.as_array().unwrap().len(), 1);
    assert_eq!(data[0]["uid"], "Kubernetes//Pod/legacy/sleep");
    let out = render(
        Kind::Certificate,
        &doc,
        &Filters::default(),
        Output::Yaml,
        NOW,
    )
    .unwrap();
    assert!(out.contains("serial: 5f3a9c"), "{out}");
}

#[test]
fn a_disconnected_agent_is_flagged() {
    let mut doc: Value = serde_json::from_str(DUMP).unwrap();
    doc["xds"]["connected"] = json!(false);
    doc["xds"]["last_error"] = json!("connection refused");
    let out = render(Kind::Service, &doc, &Filters::default(), Output::Table, NOW).unwrap();
    assert_eq!(
        out.lines().last().unwrap(),
        "warning: agent node1 is not connected to http://10.0.0.254:15010 (connection refused); this is its …"
    );
}
