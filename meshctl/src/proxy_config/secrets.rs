//! `meshctl proxy-config secret <waypoint or gateway>`: the certificates a
//! waypoint or ingress gateway presents and trusts, from the `secrets` of
//! its admin `/config_dump` (docs/contracts/waypoint-admin.md), in
//! istioctl's columns: resource name, type (`Cert Chain` or `CA`), status,
//! whether the certificate is valid now, serial, not after, not before.
//! Below the table, who each certificate names (the SPIFFE identity of
//! the workload certificate, the subject of a root, a gateway
//! certificate's DNS names) and any file the proxy could not read.
use serde_json::{json, Value};

use super::Filters;
use crate::{
    pod::PodInfo,
    render::{self, Output, Table},
};

/// The label Istio's deployment controller puts on a waypoint's (or any
/// Gateway API gateway's) pods.
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// Whether the dump is a waypoint's or gateway's (it lists `secrets`,
/// an agent's `certificates`).
pub fn is_proxy_dump(doc: &Value) -> bool {
    doc.get("secrets").is_some()
}

/// Whether `pod` runs a waypoint or gateway, which answers for its own
/// certificates (an ordinary pod's are its node agent's): a pod of a
/// waypoint in the control plane's dump `doc`, a pod labelled as a
/// Gateway API gateway's, or an Istio gateway deployment's
/// (`istio: ingressgateway`, `istio: egressgateway`, …).
pub fn serves_own_certificates(doc: &Value, pod: &PodInfo) -> bool {
    let in_waypoint = doc["waypoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["pods"].as_array().into_iter().flatten())
        .any(|uid| uid.as_str() == Some(pod.uid.as_str()));
    in_waypoint
        || pod.labels.contains_key(GATEWAY_NAME_LABEL)
        || pod
            .labels
            .get("istio")
            .is_some_and(|v| v.ends_with("gateway"))
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => "-".into(),
    }
}

fn when(v: &Value, key: &str, now_unix: i64) -> String {
    v[key]
        .as_i64()
        .map_or("-".into(), |t| render::relative(t, now_unix))
}

/// What a secret names: a workload's SPIFFE identity, a gateway
/// certificate's DNS names (else its URIs), else its subject.
fn names(v: &Value) -> String {
    if let Some(id) = v["identity"].as_str() {
        return id.to_string();
    }
    for key in ["dns_names", "uris"] {
        let list: Vec<&str> = v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !list.is_empty() {
            return list.join(", ");
        }
    }
    text(v, "subject")
}

/// The table (or data) `proxy-config secret` prints for a waypoint's or
/// gateway's dump `doc`; `--namespace` keeps workload certificates of
/// that namespace (and every other secret).
pub fn render(doc: &Value, f: &Filters, output: Output, now_unix: i64) -> String {
    let secrets: Vec<&Value> = doc["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            let identity = s["identity"].as_str().unwrap_or_default();
            f.namespace
                .as_deref()
                .is_none_or(|ns| identity.is_empty() || identity.contains(&format!("/ns/{ns}/")))
        })
        .collect();
    if let Some(text) = render::data(&json!(secrets), output) {
        return text;
    }
    if secrets.is_empty() {
        return "No secrets: the proxy holds no certificate (started without a CA?).\n".into();
    }
    let mut table = Table::new([
        "RESOURCE NAME",
        "TYPE",
        "STATUS",
        "VALID CERT",
        "SERIAL NUMBER",
        "NOT AFTER",
        "NOT BEFORE",
    ])
    .squeeze_first(4);
    let mut notes = vec![];
    for s in &secrets {
        let name = text(s, "name");
        let kind = match s["type"].as_str() {
            Some("root" | "gateway_ca") => "CA",
            _ => "Cert Chain",
        };
        let (status, valid) = match s["error"].as_str() {
            Some(error) => {
                notes.push(format!("{name}: {error}"));
                ("ERROR", "false".to_string())
            }
            None => {
                notes.push(format!("{name}: {}", names(s)));
                ("ACTIVE", text(s, "valid"))
            }
        };
        table.row([
            name,
            kind.to_string(),
            status.to_string(),
            valid,
            text(s, "serial"),
            when(s, "not_after_unix", now_unix),
            when(s, "not_before_unix", now_unix),
        ]);
    }
    let mut out = table.render(render::WIDTH);
    out.push('\n');
    for note in notes {
        out.push_str(&render::truncate(&note, render::WIDTH));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn dump() -> Value {
        json!({
            "listeners": [],
            "secrets": [
                {"name": "default", "type": "workload",
                 "identity": "spiffe://cluster.local/ns/default/sa/waypoint",
                 "serial": "1f2e", "not_before_unix": NOW - 3600, "not_after_unix": NOW + 86_400,
                 "valid": true},
                {"name": "ROOTCA", "type": "root", "subject": "O=cluster.local",
                 "serial": "77", "not_before_unix": NOW - 86_400 * 2, "not_after_unix": NOW + 86_400 * 3650,
                 "valid": true},
                {"name": "kubernetes://gone", "type": "gateway",
                 "error": "reading /creds/gone/tls.crt: No such file or directory"}
            ]
        })
    }

    #[test]
    fn shows_istioctl_columns_and_what_each_certificate_names() {
        let out = render(&dump(), &Filters::default(), Output::Table, NOW);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("RESOURCE NAME"), "{out}");
        let row = |name: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(name))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_else(|| panic!("no {name} row in\n{out}"))
        };
        assert_eq!(
            row("default"),
            ["default", "Cert", "Chain", "ACTIVE", "true", "1f2e", "in", "24h", "1h", "ago"]
        );
        assert_eq!(
            row("ROOTCA")[..6],
            ["ROOTCA", "CA", "ACTIVE", "true", "77", "in"]
        );
        assert_eq!(row("kubernetes://gone")[3..5], ["ERROR", "false"]);
        assert!(
            out.contains("default: spiffe://cluster.local/ns/default/sa/waypoint"),
            "{out}"
        );
        assert!(out.contains("ROOTCA: O=cluster.local"), "{out}");
        assert!(out.contains("gone/tls.crt: No such file"), "{out}");
    }

    #[test]
    fn json_is_the_dump_secrets_and_namespace_filters_workload_certificates() {
        let out = render(&dump(), &Filters::default(), Output::Json, NOW);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, dump()["secrets"]);
        let f = Filters {
            namespace: Some("other".into()),
            ..Filters::default()
        };
        let out = render(&dump(), &f, Output::Yaml, NOW);
        assert!(!out.contains("sa/waypoint"), "{out}");
        assert!(out.contains("ROOTCA"), "{out}");
    }

    #[test]
    fn waypoint_and_gateway_pods_answer_for_their_own_certificates() {
        let doc =
            json!({"waypoints": [{"name": "waypoint", "pods": ["Kubernetes//Pod/default/wp-0"]}]});
        let pod = |uid: &str, labels: &[(&str, &str)]| PodInfo {
            uid: uid.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PodInfo::default()
        };
        assert!(serves_own_certificates(
            &doc,
            &pod("Kubernetes//Pod/default/wp-0", &[])
        ));
        assert!(serves_own_certificates(
            &doc,
            &pod("x", &[("istio", "ingressgateway")])
        ));
        assert!(serves_own_certificates(
            &doc,
            &pod("x", &[(GATEWAY_NAME_LABEL, "waypoint")])
        ));
        assert!(!serves_own_certificates(
            &doc,
            &pod("x", &[("app", "reviews")])
        ));
    }
}
