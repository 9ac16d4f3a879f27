//! ServiceEntry hosts → [`Service`]s of the [`MeshState`], as istiod's
//! registry makes them: one per host, keyed `<namespace>/<host>`, with
//! the entry's addresses as VIPs (else allocated, [`super::vips`]), its
//! ports, labels and waypoint, and [`External`] saying how endpoints are
//! found. Pods become endpoints the way they do of Kubernetes Services
//! (their `services` map): those the `workloadSelector` picks, and those
//! whose address an inline endpoint names (that endpoint is the pod, not
//! a second workload with the same address).
//!
//! A host that is a Kubernetes Service's hostname stays that Service's,
//! and of two entries of one namespace with the same host the first (in
//! file order, as the oldest wins in istiod) defines the Service; the
//! analyzer reports both ([`crate::analyze`], MESH0112 and MESH0114).
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::IpAddr,
};

use crate::{
    model::{
        service_entry::{EndpointAddress, External, Resolution},
        MeshState, Service, ServiceEntry, WaypointRef,
    },
    source::error::Problem,
};

/// How the builder finds a service's waypoint (`istio.io/use-waypoint` on
/// the entry, else its namespace), given the entry's labels and namespace.
pub(crate) type UseWaypoint<'a> =
    &'a dyn Fn(&BTreeMap<String, String>, &str) -> Option<WaypointRef>;

/// Adds the Services of `state.service_entries` to `state` (after the
/// Kubernetes Services and pods are in it).
pub(crate) fn add(
    state: &mut MeshState,
    use_waypoint: UseWaypoint<'_>,
    problems: &mut Vec<Problem>,
) {
    let kubernetes_hosts: HashSet<String> = state
        .services
        .values()
        .map(|s| s.hostname.clone())
        .collect();
    let mut taken: HashSet<IpAddr> = state
        .services
        .values()
        .flat_map(|s| s.vips.iter().copied())
        .collect();
    let pod_ips: BTreeMap<IpAddr, String> = state
        .workloads
        .values()
        .flat_map(|w| w.ips.iter().map(|ip| (*ip, w.uid.clone())))
        .collect();
    for entry in &state.service_entries {
        for (i, block) in entry.spec.addresses.iter().enumerate() {
            let vip = block.address;
            if !entry.spec.vips().contains(&vip) {
                continue; // a range
            }
            let field = format!("spec.addresses[{i}]");
            if let Some(uid) = pod_ips.get(&vip) {
                problems.push(problem(
                    entry,
                    &field,
                    format!(
                        "{vip} is the address of pod {uid}; an entry's address must not be a pod's"
                    ),
                ));
            } else if taken.contains(&vip) {
                problems.push(problem(
                    entry,
                    &field,
                    format!("{vip} is already a Kubernetes Service's VIP"),
                ));
            }
        }
    }
    // Entries may share addresses with each other, as in istiod.
    let entry_vips: Vec<IpAddr> = state
        .service_entries
        .iter()
        .flat_map(|e| e.spec.vips())
        .collect();
    taken.extend(entry_vips);
    taken.extend(pod_ips.keys().copied());
    let mut services = BTreeMap::new();
    let mut needs_vip = BTreeSet::new();
    let mut pod_endpoints: Vec<(String, String, BTreeMap<u16, u16>)> = vec![];
    for entry in &state.service_entries {
        let spec = &entry.spec;
        let ports: BTreeMap<u16, u16> = spec
            .ports
            .iter()
            .filter(|p| !p.is_udp())
            .map(|p| (p.number, p.target_port.unwrap_or(p.number)))
            .collect();
        for host in &entry.hosts {
            let key = format!("{}/{host}", entry.namespace);
            if kubernetes_hosts.contains(host) || services.contains_key(&key) {
                continue;
            }
            // Inline endpoints that are pods: the pod lists the service
            // (the endpoint stays in `External::endpoints`, as written).
            for endpoint in &spec.endpoints {
                let EndpointAddress::Ip(ip) = &endpoint.address else {
                    continue;
                };
                if let Some(uid) = pod_ips.get(ip) {
                    let map = spec
                        .ports
                        .iter()
                        .filter(|p| !p.is_udp())
                        .map(|p| {
                            let target = endpoint.ports.get(&p.name).copied();
                            (p.number, target.or(p.target_port).unwrap_or(p.number))
                        })
                        .collect();
                    pod_endpoints.push((uid.clone(), key.clone(), map));
                }
            }
            let vips = spec.vips();
            let wildcard = host.starts_with('*');
            if spec.addresses.is_empty() && !wildcard && spec.resolution != Resolution::None {
                needs_vip.insert(key.clone());
            }
            services.insert(
                key.clone(),
                Service {
                    name: entry.name.clone(),
                    namespace: entry.namespace.clone(),
                    hostname: host.clone(),
                    vips,
                    ports: ports.clone(),
                    port_protocols: spec
                        .ports
                        .iter()
                        .filter(|p| !p.is_udp())
                        .filter_map(|p| p.protocol.clone().map(|proto| (p.number, proto)))
                        .collect(),
                    labels: entry.labels.clone(),
                    waypoint: use_waypoint(&entry.labels, &entry.namespace),
                    external: Some(External {
                        entry: entry.key(),
                        location: spec.location,
                        resolution: spec.resolution,
                        endpoints: spec.endpoints.clone(),
                        selector: spec.workload_selector.clone(),
                        export_to: entry.export_to.clone(),
                        subject_alt_names: spec.subject_alt_names.clone(),
                        port_names: spec
                            .ports
                            .iter()
                            .map(|p| (p.number, p.name.clone()))
                            .collect(),
                        allocated_vips: false,
                    }),
                },
            );
            if let Some(selector) = &spec.workload_selector {
                for w in state.workloads.values() {
                    let selected = w.namespace == entry.namespace
                        && selector.iter().all(|(k, v)| w.labels.get(k) == Some(v));
                    if selected {
                        pod_endpoints.push((w.uid.clone(), key.clone(), ports.clone()));
                    }
                }
            }
        }
    }
    for (key, vip) in super::vips::allocate(&needs_vip, &taken) {
        if let Some(svc) = services.get_mut(&key) {
            svc.vips = vec![IpAddr::V4(vip)];
            if let Some(external) = &mut svc.external {
                external.allocated_vips = true;
            }
        }
    }
    for (uid, key, map) in pod_endpoints {
        if let Some(w) = state.workloads.get_mut(&uid) {
            w.services.insert(key, map);
        }
    }
    state.services.extend(services);
}

fn problem(entry: &ServiceEntry, field: &str, message: String) -> Problem {
    Problem {
        file: entry.file.clone(),
        resource: entry.resource(),
        field: field.to_string(),
        message,
    }
}
