//! ServiceEntries that do not do everything they say: a host that is a
//! Kubernetes Service's (the Service wins), a wildcard host with a DNS
//! resolution (no VIP for it), a host two entries of one namespace define
//! (the first wins), and parts the mesh does not carry (CIDR ranges, UDP
//! ports). Computed by the source on every load, so the control plane
//! logs them too ([`crate::source::Snapshot::findings`]).
use std::collections::BTreeMap;

use super::{codes, Finding, Severity};
use crate::model::{
    service_entry::{Location, Resolution},
    MeshState, ServiceEntry,
};

fn finding(
    code: &'static str,
    entry: &ServiceEntry,
    field: String,
    message: String,
    suggestion: &str,
) -> Finding {
    Finding {
        severity: Severity::Warning,
        code,
        resource: entry.resource(),
        file: (!entry.file.is_empty()).then(|| entry.file.clone()),
        field: Some(field),
        message,
        suggestion: suggestion.to_string(),
    }
}

/// The findings of every ServiceEntry of `state` (its Services built).
pub fn findings(state: &MeshState) -> Vec<Finding> {
    let kubernetes: BTreeMap<&str, &crate::model::Service> = state
        .services
        .values()
        .filter(|s| s.external.is_none())
        .map(|s| (s.hostname.as_str(), s))
        .collect();
    let entries: BTreeMap<String, &ServiceEntry> =
        state.service_entries.iter().map(|e| (e.key(), e)).collect();
    let mut out = vec![];
    for entry in &state.service_entries {
        let dns = matches!(
            entry.spec.resolution,
            Resolution::Dns | Resolution::DnsRoundRobin
        );
        for (i, host) in entry.hosts.iter().enumerate() {
            let field = format!("spec.hosts[{i}]");
            if let Some(svc) = kubernetes.get(host.as_str()) {
                out.push(finding(
                    codes::SE_HOST_IS_SERVICE,
                    entry,
                    field,
                    format!(
                        "{host} is the hostname of Kubernetes Service {}/{}: the Service keeps its VIPs, ports and endpoints and this entry adds nothing to it",
                        svc.namespace, svc.name
                    ),
                    "remove the host from the entry (the Service already makes it reachable), or name another host",
                ));
                continue;
            }
            let key = format!("{}/{host}", entry.namespace);
            let owner = state
                .services
                .get(&key)
                .and_then(|s| s.external.as_ref())
                .map(|e| e.entry.as_str());
            if let Some(first) = owner.filter(|o| *o != entry.key()) {
                let at = entries
                    .get(first)
                    .map(|e| format!(" ({})", e.file))
                    .unwrap_or_default();
                out.push(finding(
                    codes::SE_DUPLICATE_HOST,
                    entry,
                    field.clone(),
                    format!(
                        "{host} is also a host of ServiceEntry {first}{at}, which comes first and defines it: this entry's ports, addresses, resolution and endpoints for {host} are ignored (istiod would merge the two)"
                    ),
                    "define each host in one ServiceEntry per namespace",
                ));
            }
            if dns && host.starts_with('*') {
                out.push(finding(
                    codes::SE_WILDCARD_DNS,
                    entry,
                    field,
                    format!(
                        "wildcard host {host} with a DNS resolution gets no VIP: connections to the names it covers go to the address the client resolved, not to this entry's endpoints"
                    ),
                    "list the hosts by name, or use resolution NONE for a wildcard",
                ));
            }
        }
        for block in entry.spec.ranges() {
            let i = entry
                .spec
                .addresses
                .iter()
                .position(|b| b == block)
                .unwrap_or(0);
            out.push(finding(
                codes::SE_UNSUPPORTED,
                entry,
                format!("spec.addresses[{i}]"),
                format!("{block} is a range: the mesh captures single addresses only, so connections into this range are not matched to the entry"),
                "list the addresses one by one, or leave them out (a VIP is then allocated for DNS and STATIC entries)",
            ));
        }
        for (i, port) in entry.spec.ports.iter().enumerate() {
            if port.is_udp() {
                out.push(finding(
                    codes::SE_UNSUPPORTED,
                    entry,
                    format!("spec.ports[{i}].protocol"),
                    format!(
                        "port {} is UDP: the mesh carries TCP only, so this port is not published",
                        port.number
                    ),
                    "remove the port, or serve it over TCP",
                ));
            }
        }
        if entry.spec.location == Location::MeshInternal
            && !entry.spec.endpoints.is_empty()
            && entry.spec.workload_selector.is_none()
        {
            let pods: Vec<_> = state.workloads.values().flat_map(|w| &w.ips).collect();
            let outside = entry.spec.endpoints.iter().any(|ep| match &ep.address {
                crate::model::service_entry::EndpointAddress::Ip(ip) => !pods.contains(&ip),
                crate::model::service_entry::EndpointAddress::Host(_) => true,
            });
            if outside {
                out.push(Finding {
                    severity: Severity::Info,
                    ..finding(
                        codes::SE_UNSUPPORTED,
                        entry,
                        "spec.location".into(),
                        "MESH_INTERNAL endpoints that are no pod of the cluster are reached in plaintext (no HBONE: they have no mesh identity)".into(),
                        "select the mesh pods with a workloadSelector, or use MESH_EXTERNAL",
                    )
                });
            }
        }
    }
    out
}
