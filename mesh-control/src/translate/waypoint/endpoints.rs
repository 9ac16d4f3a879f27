//! A ClusterLoadAssignment per cluster: one locality, an endpoint per pod
//! the service selects (and the subset's labels match), at the pod's
//! first IP and the target port the service maps the cluster's port to,
//! tagged `filter_metadata["istio"]["workload"] = <uid>` so the waypoint
//! can find the workload (and its HBONE gateway) in the Address xDS.
//! A ServiceEntry host has an assignment only when its clusters are EDS
//! (`resolution: STATIC`): its inline endpoints, or the pods its
//! `workloadSelector` picks ([`super::clusters::external`]).
use std::collections::{BTreeMap, HashMap};

use envoy_types::pb::envoy::config::{
    core::v3::{address, socket_address, Address, HealthStatus, Metadata, SocketAddress},
    endpoint::v3::{
        lb_endpoint::HostIdentifier, ClusterLoadAssignment, Endpoint, LbEndpoint,
        LocalityLbEndpoints,
    },
};

use super::{
    clusters::{cluster_refs, external, ClusterRef},
    pb, Cx,
};
use crate::{model::Workload, translate::workload::service_resource_name};

/// Every cluster's assignment, in cluster order.
pub fn endpoints(cx: &Cx<'_>) -> Vec<ClusterLoadAssignment> {
    // Service resource name → the pods it selects, built once.
    let mut selected: BTreeMap<&str, Vec<&Workload>> = BTreeMap::new();
    for w in cx.state.workloads.values() {
        for key in w.services.keys() {
            selected.entry(key.as_str()).or_default().push(w);
        }
    }
    cluster_refs(cx)
        .into_iter()
        .filter(|r| external::uses_eds(r.service))
        .map(|r| {
            if let Some(ext) = r.service.external.as_ref().filter(|e| e.selector.is_none()) {
                return external::static_assignment(&r.name(), r.service, ext, r.port, r.subset);
            }
            let key = service_resource_name(r.service);
            let pods = selected.get(key.as_str()).map_or(&[][..], Vec::as_slice);
            assignment(&r, pods)
        })
        .collect()
}

/// The assignment of one cluster, over the pods its service selects.
pub fn assignment(r: &ClusterRef<'_>, pods: &[&Workload]) -> ClusterLoadAssignment {
    let key = service_resource_name(r.service);
    let lb_endpoints = pods
        .iter()
        .filter(|w| {
            r.subset
                .is_none_or(|s| s.labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
        })
        .filter_map(|w| {
            let target = *w.services.get(&key)?.get(&r.port)?;
            let ip = w.ips.first()?;
            Some(LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(&ip.to_string(), u32::from(target))),
                    ..Default::default()
                })),
                health_status: HealthStatus::Healthy as i32,
                metadata: Some(Metadata {
                    filter_metadata: HashMap::from([(
                        "istio".to_string(),
                        pb::structure([("workload".to_string(), pb::string_value(&w.uid))]),
                    )]),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: r.name(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `ip:port` as an Envoy socket address.
pub fn socket(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}
