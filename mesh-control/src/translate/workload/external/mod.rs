//! ServiceEntry hosts in the workload xDS, as istiod publishes them for
//! ambient: the host is an `istio.workload.Service` (with
//! `subject_alt_names` and this mesh's `export_to` / `passthrough`
//! extensions), and its inline endpoints (or, for DNS without endpoints,
//! each host itself) are `istio.workload.Workload`s named
//! `<cluster_id>/networking.istio.io/ServiceEntry/<namespace>/<name>/<address or host>`:
//! tunnel protocol NONE, no identity (empty trust domain and service
//! account: no SPIFFE identity, never a client or a policy target), an IP
//! `address` or a DNS `hostname`. Pods that are endpoints (selected or
//! named by address) list the host in their own `services` instead
//! (`crate::source`).
use std::collections::BTreeMap;

use mesh_xds::proto::istio_workload::{
    Port, PortList, TunnelProtocol, Workload, WorkloadStatus, WorkloadType,
};

use super::{ip_bytes, ConvertOptions};
use crate::model::{
    service_entry::{EndpointAddress, External, Resolution, ServiceEntryEndpoint},
    visibility::{NONE, PRIVATE, PUBLIC},
    MeshState, Service,
};

/// `export_to` of an entry's Service: `.` → the entry's namespace, names
/// as written, sorted and deduplicated; `*` (or no `exportTo`) → empty
/// (every namespace); `~` → `["~"]`, a list no namespace matches (`~` is
/// not a namespace name).
pub fn export_to(external: &External, namespace: &str) -> Vec<String> {
    if external.export_to.is_empty() || external.export_to.iter().any(|e| e == PUBLIC) {
        return vec![];
    }
    let mut out: Vec<String> = external
        .export_to
        .iter()
        .map(|e| {
            if e == PRIVATE {
                namespace.to_string()
            } else {
                e.clone()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    if out.iter().any(|e| e == NONE) {
        return vec![NONE.to_string()];
    }
    out
}

/// `<cluster_id>/networking.istio.io/ServiceEntry/<namespace>/<name>/<address>`.
pub fn endpoint_uid(opts: &ConvertOptions, entry_key: &str, address: &str) -> String {
    format!(
        "{}/networking.istio.io/ServiceEntry/{entry_key}/{address}",
        opts.cluster_id
    )
}

/// The port list of `svc` for an endpoint: the endpoint's `ports[name]`,
/// else the service's target port.
fn endpoint_ports(
    svc: &Service,
    external: &External,
    ep: Option<&ServiceEntryEndpoint>,
) -> PortList {
    let ports = svc
        .ports
        .iter()
        .map(|(service_port, target)| {
            let named = external
                .port_names
                .get(service_port)
                .and_then(|name| ep.and_then(|ep| ep.ports.get(name)));
            Port {
                service_port: u32::from(*service_port),
                target_port: u32::from(named.copied().unwrap_or(*target)),
                ..Default::default()
            }
        })
        .collect();
    PortList { ports }
}

/// The endpoint workloads of every ServiceEntry: (uid, workload), one per
/// distinct address of an entry, naming every host of it.
pub fn endpoint_workloads(state: &MeshState, opts: &ConvertOptions) -> Vec<(String, Workload)> {
    // Entry → its hosts' services, in key order.
    let mut by_entry: BTreeMap<&str, Vec<&Service>> = BTreeMap::new();
    for svc in state.services.values() {
        if let Some(external) = &svc.external {
            by_entry.entry(&external.entry).or_default().push(svc);
        }
    }
    let pod_ips: std::collections::HashSet<std::net::IpAddr> = state
        .workloads
        .values()
        .flat_map(|w| w.ips.iter().copied())
        .collect();
    let mut out: BTreeMap<String, Workload> = BTreeMap::new();
    for (entry_key, services) in by_entry {
        let Some(external) = services[0].external.as_ref() else {
            continue;
        };
        let implicit = external.endpoints.is_empty()
            && external.selector.is_none()
            && matches!(
                external.resolution,
                Resolution::Dns | Resolution::DnsRoundRobin
            );
        if implicit {
            // Each host is its own endpoint, resolved by DNS.
            for svc in &services {
                let uid = endpoint_uid(opts, entry_key, &svc.hostname);
                let mut w = workload(svc, &uid, opts);
                w.hostname = svc.hostname.clone();
                w.services = services_map(&[svc], None);
                out.entry(uid).or_insert(w);
            }
            continue;
        }
        for ep in &external.endpoints {
            let (address, shown) = match &ep.address {
                // The pod is the endpoint (it lists the hosts itself).
                EndpointAddress::Ip(ip) if pod_ips.contains(ip) => continue,
                EndpointAddress::Ip(ip) => (Some(ip), ip.to_string()),
                EndpointAddress::Host(host) => (None, host.clone()),
            };
            let uid = endpoint_uid(opts, entry_key, &shown);
            let mut w = workload(services[0], &uid, opts);
            match address {
                Some(ip) => w.addresses = vec![ip_bytes(ip)],
                None => w.hostname = shown,
            }
            w.services = services_map(&services, Some(ep));
            if let Some(name) = ep.labels.get("app") {
                w.canonical_name = name.clone();
            }
            if let Some(version) = ep.labels.get("version") {
                w.canonical_revision = version.clone();
            }
            out.entry(uid).or_insert(w);
        }
    }
    out.into_iter().collect()
}

fn services_map(
    services: &[&Service],
    ep: Option<&ServiceEntryEndpoint>,
) -> std::collections::HashMap<String, PortList> {
    services
        .iter()
        .filter_map(|svc| {
            let external = svc.external.as_ref()?;
            Some((
                super::service_resource_name(svc),
                endpoint_ports(svc, external, ep),
            ))
        })
        .collect()
}

/// An endpoint workload of `svc`'s entry, without address or services.
fn workload(svc: &Service, uid: &str, opts: &ConvertOptions) -> Workload {
    Workload {
        uid: uid.to_string(),
        name: svc.name.clone(),
        namespace: svc.namespace.clone(),
        addresses: vec![],
        hostname: String::new(),
        network: opts.network.clone(),
        tunnel_protocol: TunnelProtocol::None as i32,
        trust_domain: String::new(),
        service_account: String::new(),
        waypoint: None,
        network_gateway: None,
        node: String::new(),
        canonical_name: svc.name.clone(),
        canonical_revision: "latest".into(),
        workload_type: WorkloadType::Pod as i32,
        workload_name: svc.name.clone(),
        services: Default::default(),
        authorization_policies: vec![],
        status: WorkloadStatus::Healthy as i32,
        cluster_id: opts.cluster_id.clone(),
        probe_ports: vec![],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
