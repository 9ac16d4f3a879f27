//! Traffic-routing references: VirtualService destinations must name a
//! known host (a Service, or a ServiceEntry host) and, when they name a
//! subset, a subset some DestinationRule defines; DestinationRule subsets
//! should select at least one pod of their Service.
//!
//! Short host names resolve as Istio resolves them: a name without a dot
//! is `<name>.<namespace of the resource>.svc.<cluster domain>`; anything
//! with a dot is taken as written.
use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use super::{codes, Finding, Severity};
use crate::source::{RawResource, Snapshot, SourceConfig};

/// `reviews` in `bookinfo` → `reviews.bookinfo.svc.cluster.local`.
pub(crate) fn resolve(host: &str, namespace: &str, cluster_domain: &str) -> String {
    if host.contains('.') || host.starts_with('*') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.svc.{cluster_domain}")
    }
}

/// Hosts something serves: Services and ServiceEntry hosts (which may be
/// wildcards, `*.example.com`).
struct KnownHosts {
    exact: BTreeSet<String>,
    wildcard_suffixes: Vec<String>,
}

impl KnownHosts {
    fn contains(&self, host: &str) -> bool {
        self.exact.contains(host)
            || self
                .wildcard_suffixes
                .iter()
                .any(|suffix| suffix.is_empty() || host.ends_with(suffix.as_str()))
    }
}

fn strs(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_sequence)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn finding(
    raw: &RawResource,
    code: &'static str,
    field: String,
    message: String,
    suggestion: &str,
) -> Finding {
    Finding {
        severity: Severity::Warning,
        code,
        resource: format!("{} {}/{}", raw.kind, raw.namespace, raw.name),
        file: (!raw.file.is_empty()).then(|| raw.file.clone()),
        field: Some(field),
        message,
        suggestion: suggestion.to_string(),
    }
}

fn of_kind<'s>(snapshot: &'s Snapshot, kind: &'s str) -> impl Iterator<Item = &'s RawResource> {
    snapshot
        .raw
        .iter()
        .filter(move |r| r.kind == kind && r.api_version.starts_with("networking.istio.io/"))
}

pub(crate) fn check(snapshot: &Snapshot, config: &SourceConfig, findings: &mut Vec<Finding>) {
    let domain = &config.cluster_domain;
    let mut known = KnownHosts {
        exact: snapshot
            .state
            .services
            .values()
            .map(|s| s.hostname.clone())
            .collect(),
        wildcard_suffixes: vec![],
    };
    for se in of_kind(snapshot, "ServiceEntry") {
        for host in strs(se.value["spec"].get("hosts")) {
            match host.strip_prefix('*') {
                Some(suffix) => known.wildcard_suffixes.push(suffix.to_string()),
                None => {
                    known.exact.insert(resolve(host, &se.namespace, domain));
                }
            }
        }
    }
    // Resolved host → subset names, over every DestinationRule.
    let mut subsets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for dr in of_kind(snapshot, "DestinationRule") {
        let Some(host) = dr.value["spec"].get("host").and_then(Value::as_str) else {
            continue;
        };
        let host = resolve(host, &dr.namespace, domain);
        let names = subsets.entry(host.clone()).or_default();
        let list = dr.value["spec"].get("subsets").and_then(Value::as_sequence);
        for (i, subset) in list.into_iter().flatten().enumerate() {
            if let Some(name) = subset.get("name").and_then(Value::as_str) {
                names.insert(name.to_string());
            }
            check_subset_pods(snapshot, dr, &host, i, subset, findings);
        }
    }
    for vs in of_kind(snapshot, "VirtualService") {
        for (field, destination) in destinations(&vs.value) {
            let Some(host) = destination.get("host").and_then(Value::as_str) else {
                continue;
            };
            let resolved = resolve(host, &vs.namespace, domain);
            if !resolved.contains('*') && !known.contains(&resolved) {
                findings.push(finding(
                    vs,
                    codes::VS_UNKNOWN_HOST,
                    format!("{field}.host"),
                    format!("destination host {host:?} ({resolved}) is no known Service or ServiceEntry host"),
                    "check the name and namespace (short names resolve in the VirtualService's namespace), or add the Service / a ServiceEntry",
                ));
            }
            let Some(subset) = destination.get("subset").and_then(Value::as_str) else {
                continue;
            };
            if !subsets.get(&resolved).is_some_and(|s| s.contains(subset)) {
                findings.push(finding(
                    vs,
                    codes::VS_UNKNOWN_SUBSET,
                    format!("{field}.subset"),
                    format!("subset {subset:?} of {resolved} is defined by no DestinationRule; traffic routed to it fails"),
                    "add the subset to a DestinationRule for this host (spec.subsets[].name and labels)",
                ));
            }
        }
    }
}

/// Every `destination` (and `mirror`) of a VirtualService, with its field path.
fn destinations(vs: &Value) -> Vec<(String, &Value)> {
    let mut out = vec![];
    for protocol in ["http", "tcp", "tls"] {
        let routes = vs["spec"].get(protocol).and_then(Value::as_sequence);
        for (i, route) in routes.into_iter().flatten().enumerate() {
            let list = route.get("route").and_then(Value::as_sequence);
            for (j, weighted) in list.into_iter().flatten().enumerate() {
                if let Some(destination) = weighted.get("destination") {
                    out.push((
                        format!("spec.{protocol}[{i}].route[{j}].destination"),
                        destination,
                    ));
                }
            }
            if let Some(mirror) = route.get("mirror").filter(|m| m.is_mapping()) {
                out.push((format!("spec.{protocol}[{i}].mirror"), mirror));
            }
        }
    }
    out
}

/// A subset whose labels select none of its Service's pods routes nowhere.
/// Only checked when the host is a Service of this configuration (pods of
/// other hosts are not known).
fn check_subset_pods(
    snapshot: &Snapshot,
    dr: &RawResource,
    host: &str,
    index: usize,
    subset: &Value,
    findings: &mut Vec<Finding>,
) {
    let Some(service) = snapshot
        .state
        .services
        .values()
        .find(|s| s.hostname == host)
    else {
        return;
    };
    let key = format!("{}/{}", service.namespace, service.hostname);
    let labels: BTreeMap<&str, &str> = subset
        .get("labels")
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?, v.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let selects = |l: &BTreeMap<String, String>| {
        labels
            .iter()
            .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
    };
    let matches = snapshot
        .state
        .workloads
        .values()
        .any(|w| w.services.contains_key(&key) && selects(&w.labels))
        // A ServiceEntry host's inline endpoints carry labels too.
        || service
            .external
            .iter()
            .flat_map(|e| &e.endpoints)
            .any(|ep| selects(&ep.labels));
    if !matches {
        let name = subset.get("name").and_then(Value::as_str).unwrap_or("?");
        let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        findings.push(finding(
            dr,
            codes::DR_SUBSET_NO_PODS,
            format!("spec.subsets[{index}].labels"),
            format!(
                "subset {name:?} ({}) matches no pod of Service {}/{}",
                shown.join(","),
                service.namespace,
                service.name
            ),
            "check the subset's labels against the pods' labels (e.g. version: v1)",
        ));
    }
}
