//! `networking.istio.io` (v1, v1beta1, v1alpha3) ServiceEntry → the typed
//! [`ServiceEntry`], validated as istiod's webhook validates it, each
//! problem naming the field (`spec.endpoints[1].ports.http`):
//!
//! - `hosts`: at least one; each a DNS name, or `*.` and a DNS name (a
//!   wildcard); `*` alone is refused. Repeated hosts count once.
//! - `addresses`: IPs or CIDRs; CIDRs only with resolution NONE or STATIC.
//! - `ports`: `number` 1–65535 and `name` (a DNS-1123 label) required,
//!   both unique; `protocol` one of Istio's (`HTTP`, `HTTPS`, `HTTP2`,
//!   `GRPC`, `GRPC-WEB`, `TCP`, `TLS`, `MONGO`, `REDIS`, `MYSQL`, `UDP`,
//!   `HTTP_PROXY`, any case); `targetPort` 1–65535.
//! - `resolution` (default NONE) against `endpoints` / `workloadSelector`:
//!   NONE takes no endpoints; STATIC needs endpoints or a selector, and
//!   its endpoints are IPs; DNS and DNS_ROUND_ROBIN without endpoints
//!   need hosts without wildcards; DNS_ROUND_ROBIN takes at most one
//!   endpoint; `endpoints` and `workloadSelector` exclude each other.
//! - `endpoints[]`: `address` (an IP, or with a DNS resolution a DNS
//!   name; `unix://` sockets are refused: nothing here can reach them),
//!   `ports` naming declared ports, `labels`, `weight`; `network`,
//!   `locality` and `serviceAccount` are accepted and not used.
//! - `exportTo` ([`super::export_to`]), `subjectAltNames`, `location`.
//!
//! A field this version does not know is warned about and ignored.
use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use super::{
    export_to::export_to,
    fields,
    routing::{choice, entries, labels, list, port, req_text, strings, u32_field, Cx},
};
use crate::model::{
    service_entry::{
        EndpointAddress, Location, Resolution, ServiceEntryEndpoint, ServiceEntryPort,
        ServiceEntrySpec,
    },
    ServiceEntry,
};

/// Istio's protocol names (`protocol.Parse`), upper case.
const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "HTTP2",
    "GRPC",
    "GRPC-WEB",
    "TCP",
    "TLS",
    "MONGO",
    "REDIS",
    "MYSQL",
    "UDP",
    "HTTP_PROXY",
];

/// Parses the ServiceEntry in `value`; `None` when any problem was
/// reported.
pub(crate) fn service_entry(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    version: &str,
    name: &str,
    namespace: &str,
) -> Option<ServiceEntry> {
    let before = cx.count();
    if !cx.check_version("ServiceEntry", version) {
        return None;
    }
    let labels = fields::string_map(cx.rep, value, "metadata.labels");
    let mut entry = ServiceEntry {
        name: name.to_string(),
        namespace: namespace.to_string(),
        file: cx.rep.file.to_string(),
        labels,
        hosts: vec![],
        export_to: vec![],
        spec: ServiceEntrySpec::default(),
    };
    let spec = value.get("spec").unwrap_or(&Value::Null);
    let spec_entries = if spec.is_null() {
        vec![]
    } else {
        entries(cx, spec, "spec")
    };
    // Checked after every field is read: (value, field) of the raw lists.
    let mut endpoints_field = None;
    let mut selector_field = None;
    for (key, value, at) in spec_entries {
        let s = &mut entry.spec;
        match key {
            "hosts" => entry.hosts = hosts(cx, value, &at),
            "addresses" => s.addresses = fields::blocks(cx.rep, value, &at),
            "ports" => s.ports = ports(cx, value, &at),
            "location" => {
                s.location =
                    match choice(cx, value, &at, &["MESH_EXTERNAL", "MESH_INTERNAL"]).as_deref() {
                        Some("MESH_INTERNAL") => Location::MeshInternal,
                        _ => Location::MeshExternal,
                    }
            }
            "resolution" => {
                let choices = ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"];
                s.resolution = match choice(cx, value, &at, &choices).as_deref() {
                    Some("STATIC") => Resolution::Static,
                    Some("DNS") => Resolution::Dns,
                    Some("DNS_ROUND_ROBIN") => Resolution::DnsRoundRobin,
                    _ => Resolution::None,
                }
            }
            "endpoints" => endpoints_field = Some((value, at)),
            "workloadSelector" => selector_field = Some((value, at)),
            "exportTo" => entry.export_to = export_to(cx.rep, value, &at, namespace),
            "subjectAltNames" => s.subject_alt_names = strings(cx, value, &at),
            other => cx.warn(
                &at,
                format!("{other:?} is not a ServiceEntry field this mesh knows; ignored"),
            ),
        }
    }
    if let Some((value, at)) = selector_field {
        entry.spec.workload_selector = Some(workload_selector(cx, value, &at));
    }
    if let Some((value, at)) = endpoints_field {
        let port_names: BTreeSet<&str> = entry.spec.ports.iter().map(|p| p.name.as_str()).collect();
        let dns = matches!(
            entry.spec.resolution,
            Resolution::Dns | Resolution::DnsRoundRobin
        );
        entry.spec.endpoints = list(cx, value, &at)
            .into_iter()
            .filter_map(|(item, at)| endpoint(cx, item, &at, &port_names, dns))
            .collect();
        if entry.spec.workload_selector.is_some() && !entry.spec.endpoints.is_empty() {
            cx.error(
                "spec.workloadSelector",
                "only one of workloadSelector or endpoints is allowed",
            );
        }
    }
    let hosts_written = spec
        .get("hosts")
        .and_then(Value::as_sequence)
        .is_some_and(|h| !h.is_empty());
    if !hosts_written {
        cx.error("spec.hosts", "at least one host is required");
    }
    check_resolution(cx, &entry);
    (cx.count() == before).then_some(entry)
}

/// The rules between `resolution`, `endpoints`, `workloadSelector`,
/// `hosts` and `addresses`.
fn check_resolution(cx: &mut Cx<'_, '_>, entry: &ServiceEntry) {
    let s = &entry.spec;
    let resolution = match s.resolution {
        Resolution::None => "NONE",
        Resolution::Static => "STATIC",
        Resolution::Dns => "DNS",
        Resolution::DnsRoundRobin => "DNS_ROUND_ROBIN",
    };
    match s.resolution {
        Resolution::None if !s.endpoints.is_empty() => cx.error(
            "spec.endpoints",
            "resolution NONE takes no endpoints (connections go to the address the client dialled); use STATIC or DNS",
        ),
        Resolution::Static if s.endpoints.is_empty() && s.workload_selector.is_none() => cx.error(
            "spec.resolution",
            "STATIC needs endpoints or a workloadSelector",
        ),
        Resolution::Dns | Resolution::DnsRoundRobin => {
            if s.endpoints.is_empty() && s.workload_selector.is_none() {
                for (i, host) in entry.hosts.iter().enumerate() {
                    if host.starts_with('*') {
                        cx.error(
                            format!("spec.hosts[{i}]"),
                            format!("{host:?}: a wildcard host cannot be resolved; resolution {resolution} without endpoints needs hosts that are DNS names (or use resolution NONE)"),
                        );
                    }
                }
            }
            if s.resolution == Resolution::DnsRoundRobin && s.endpoints.len() > 1 {
                cx.error(
                    "spec.endpoints",
                    "resolution DNS_ROUND_ROBIN takes at most one endpoint",
                );
            }
        }
        _ => {}
    }
    if matches!(s.resolution, Resolution::Dns | Resolution::DnsRoundRobin) {
        for (i, block) in s.addresses.iter().enumerate() {
            if s.ranges().any(|r| r == block) {
                cx.error(
                    format!("spec.addresses[{i}]"),
                    format!(
                        "{block}: CIDR addresses are allowed only with resolution NONE or STATIC"
                    ),
                );
            }
        }
    }
}

/// `spec.hosts`: DNS names, `*.`-prefixed wildcards; repeats dropped.
fn hosts(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for (i, host) in strings(cx, value, field).into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        if host == "*" {
            cx.error(
                at,
                "\"*\" is not a valid host (name the hosts, or a wildcard such as *.example.com)",
            );
            continue;
        }
        let name = host.strip_prefix("*.").unwrap_or(&host);
        if let Err(why) = dns_name(name) {
            cx.error(
                at,
                format!("{host:?} is not a DNS name or a *.-prefixed wildcard: {why}"),
            );
            continue;
        }
        if !out.contains(&host) {
            out.push(host);
        }
    }
    out
}

/// A DNS name: labels of letters, digits and `-` (not at either end),
/// 1–63 characters each, at most 253 in all; a trailing `.` is not
/// allowed (Istio's hostnames have none).
pub(crate) fn dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "label {label:?} is not 1-63 letters, digits and '-' (not at either end)"
            ));
        }
    }
    Ok(())
}

fn ports(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> Vec<ServiceEntryPort> {
    let mut out: Vec<ServiceEntryPort> = vec![];
    for (item, at) in list(cx, value, field) {
        let before = cx.count();
        let (mut number, mut name, mut protocol, mut target_port) = (None, None, None, None);
        let mut saw_number = false;
        for (key, value, at) in entries(cx, item, &at) {
            match key {
                "number" => {
                    saw_number = true;
                    number = port(cx, value, &at);
                }
                "name" => {
                    name = req_text(cx, value, &at)
                        .filter(|n| fields::check_name(cx.rep, &at, n, true));
                }
                "protocol" => {
                    protocol = req_text(cx, value, &at);
                    if let Some(p) = &protocol {
                        if !PROTOCOLS.iter().any(|known| known.eq_ignore_ascii_case(p)) {
                            cx.error(
                                &at,
                                format!(
                                    "{p:?} is not a protocol Istio knows ({})",
                                    PROTOCOLS.join(", ")
                                ),
                            );
                        }
                    }
                }
                "targetPort" => target_port = port(cx, value, &at),
                other => cx.warn(&at, format!("{other:?} is not a port field; ignored")),
            }
        }
        if !saw_number {
            cx.error(format!("{at}.number"), "required field is missing");
        }
        if name.is_none() && item.get("name").is_none_or(Value::is_null) {
            cx.error(format!("{at}.name"), "required field is missing");
        }
        let (Some(number), Some(name)) = (number, name) else {
            continue;
        };
        if cx.count() != before {
            continue;
        }
        if out.iter().any(|p| p.number == number) {
            cx.error(
                format!("{at}.number"),
                format!("port {number} is listed twice"),
            );
            continue;
        }
        if out.iter().any(|p| p.name == name) {
            cx.error(
                format!("{at}.name"),
                format!("port name {name:?} is listed twice"),
            );
            continue;
        }
        out.push(ServiceEntryPort {
            number,
            name,
            protocol,
            target_port,
        });
    }
    out
}

fn workload_selector(cx: &mut Cx<'_, '_>, value: &Value, field: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "labels" => out = labels(cx, value, &at),
            other => cx.warn(
                &at,
                format!("{other:?} is not a workloadSelector field; ignored"),
            ),
        }
    }
    out
}

/// One of `spec.endpoints` (a WorkloadEntry).
fn endpoint(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    field: &str,
    port_names: &BTreeSet<&str>,
    dns: bool,
) -> Option<ServiceEntryEndpoint> {
    let before = cx.count();
    let mut address = None;
    let mut endpoint_ports = BTreeMap::new();
    let mut endpoint_labels = BTreeMap::new();
    let mut weight = 0;
    for (key, value, at) in entries(cx, value, field) {
        match key {
            "address" => {
                address = req_text(cx, value, &at).and_then(|a| endpoint_address(cx, &a, &at, dns))
            }
            "ports" => {
                for (name, value, at) in entries(cx, value, &at) {
                    if !port_names.contains(name) {
                        cx.error(
                            &at,
                            format!("{name:?} is not the name of one of spec.ports"),
                        );
                    } else if let Some(p) = port(cx, value, &at) {
                        endpoint_ports.insert(name.to_string(), p);
                    }
                }
            }
            "labels" => endpoint_labels = labels(cx, value, &at),
            "weight" => weight = u32_field(cx, value, &at).unwrap_or(0),
            // Multi-network, locality-aware LB and sidecar identities: not
            // something this mesh acts on for an entry's endpoints.
            "network" | "locality" | "serviceAccount" => {}
            other => cx.warn(&at, format!("{other:?} is not an endpoint field; ignored")),
        }
    }
    if address.is_none() && value.get("address").is_none_or(Value::is_null) {
        cx.error(format!("{field}.address"), "required field is missing");
    }
    let address = address?;
    (cx.count() == before).then_some(ServiceEntryEndpoint {
        address,
        ports: endpoint_ports,
        labels: endpoint_labels,
        weight,
    })
}

fn endpoint_address(
    cx: &mut Cx<'_, '_>,
    text: &str,
    field: &str,
    dns: bool,
) -> Option<EndpointAddress> {
    if let Ok(ip) = text.parse() {
        return Some(EndpointAddress::Ip(ip));
    }
    if text.starts_with("unix://") {
        cx.error(
            field,
            format!("{text:?}: Unix domain socket endpoints are not supported (the mesh reaches endpoints over TCP)"),
        );
        return None;
    }
    if !dns {
        cx.error(
            field,
            format!("{text:?} is not an IP address (a DNS name is allowed only with resolution DNS or DNS_ROUND_ROBIN)"),
        );
        return None;
    }
    match dns_name(text) {
        Ok(()) => Some(EndpointAddress::Host(text.to_string())),
        Err(why) => {
            cx.error(
                field,
                format!("{text:?} is not an IP address or a DNS name: {why}"),
            );
            None
        }
    }
}

pub(crate) mod services;
mod vips;

#[cfg(test)]
mod tests;
