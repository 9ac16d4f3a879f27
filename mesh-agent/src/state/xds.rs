//! Builds the agent's [`MeshView`] from the xDS snapshot (Istio's Address
//! and Authorization resources): workloads in the model shared with the
//! waypoint (`mesh_xds::workload`), services as one entry per VIP:port with
//! their endpoints' target ports, and the policy set.
use std::{net::SocketAddr, sync::Arc};

use mesh_xds::{
    proto::istio_workload,
    workload::{gateway_ip_port, ip_from_bytes, Workload},
    XdsSnapshot,
};

use super::view::{MeshView, ServiceInfo, ServiceName, WorkloadInfo};

/// The routing view for the agent of `node`.
pub fn view(node: &str, snapshot: &XdsSnapshot) -> MeshView {
    let workloads: Vec<WorkloadInfo> = snapshot
        .workloads()
        .filter_map(|(name, w)| WorkloadInfo::new(Workload::from_proto(name, w)))
        .collect();
    let mut services = Vec::new();
    for (name, svc) in snapshot.services() {
        let key = format!("{}/{}", svc.namespace, svc.hostname);
        let service_name = Arc::new(ServiceName {
            hostname: svc.hostname.clone(),
            name: svc.name.clone(),
            namespace: svc.namespace.clone(),
        });
        let waypoint = svc.waypoint.as_ref().and_then(waypoint_addr);
        for port in &svc.ports {
            let Ok(service_port) = u16::try_from(port.service_port) else {
                continue;
            };
            let endpoints: Vec<(String, u16)> = snapshot
                .workloads()
                .filter_map(|(resource, w)| {
                    let list = w.services.get(&key)?;
                    let p = list
                        .ports
                        .iter()
                        .find(|p| p.service_port == port.service_port)?;
                    let target = if p.target_port == 0 {
                        p.service_port
                    } else {
                        p.target_port
                    };
                    // The uid as `Workload::from_proto` decodes it.
                    let uid = if w.uid.is_empty() { resource } else { &w.uid };
                    Some((uid.to_string(), u16::try_from(target).ok()?))
                })
                .collect();
            for vip in svc
                .addresses
                .iter()
                .filter_map(|a| ip_from_bytes(&a.address))
            {
                services.push(ServiceInfo {
                    key: name.to_string(),
                    name: Arc::clone(&service_name),
                    vip: SocketAddr::new(vip, service_port),
                    endpoints: endpoints.clone(),
                    waypoint,
                });
            }
        }
    }
    let policies = crate::policy::PolicySet::new(snapshot.authorizations().map(|(_, p)| p.clone()));
    MeshView::new(node, workloads, services).with_policies(policies)
}

/// The HBONE address of a service's waypoint: an IP address and a port
/// (a hostname waypoint, or one without a port, is not supported and
/// ignored).
fn waypoint_addr(gw: &istio_workload::GatewayAddress) -> Option<SocketAddr> {
    let (ip, port) = gateway_ip_port(gw)?;
    Some(SocketAddr::new(ip, port?))
}
