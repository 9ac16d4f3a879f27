//! Builds the agent's [`MeshView`] from the xDS snapshot (Istio's Address
//! and Authorization resources): workloads in the model shared with the
//! waypoint (`mesh_xds::workload`), services as one entry per VIP:port with
//! their endpoints' target ports, and the policy set.
//!
//! A workload whose fields form no SPIFFE identity is kept only when it
//! is no mesh workload and has an address or a hostname: a ServiceEntry
//! endpoint ([`ExternalEndpoint`]). A mesh workload always has an
//! identity.
use std::{net::SocketAddr, sync::Arc};

use mesh_xds::{
    proto::istio_workload,
    workload::{gateway_ip_port, ip_from_bytes, Workload},
    XdsSnapshot,
};

use super::view::{
    EndpointAddress, ExportTo, ExternalEndpoint, MeshView, ServiceInfo, ServiceName, WorkloadInfo,
};

/// Decodes one workload into `workloads` (a pod with its identity) or
/// `external` (an endpoint outside the mesh); anything else is dropped.
fn decode(
    resource: &str,
    w: &istio_workload::Workload,
    workloads: &mut Vec<WorkloadInfo>,
    external: &mut Vec<ExternalEndpoint>,
) {
    let workload = Workload::from_proto(resource, w);
    let address = match (&workload.hostname, workload.ips.is_empty()) {
        // A name to resolve makes it a ServiceEntry endpoint, never a pod.
        (Some(host), true) => EndpointAddress::Hostname(Arc::from(host.as_str())),
        _ => EndpointAddress::Ips(workload.ips.clone()),
    };
    let (uid, namespace, mesh) = (
        workload.uid.clone(),
        workload.namespace.clone(),
        workload.mesh,
    );
    if matches!(address, EndpointAddress::Ips(_)) {
        if let Some(info) = WorkloadInfo::new(workload) {
            workloads.push(info);
            return;
        }
    }
    let reachable = match &address {
        EndpointAddress::Ips(ips) => !ips.is_empty(),
        EndpointAddress::Hostname(_) => true,
    };
    if !mesh && reachable {
        external.push(ExternalEndpoint {
            uid,
            namespace,
            address,
        });
    }
}

/// The routing view for the agent of `node`.
pub fn view(node: &str, snapshot: &XdsSnapshot) -> MeshView {
    let workloads: Vec<_> = snapshot.workloads().collect();
    let services: Vec<_> = snapshot.services().collect();
    let policies = crate::policy::PolicySet::new(snapshot.authorizations().map(|(_, p)| p.clone()));
    build(node, &workloads, &services).with_policies(policies)
}

/// Workloads and services (resource name, resource) of the Address xDS.
type Resources<'a, T> = [(&'a str, &'a T)];

/// The view of the Address resources, without policies.
pub(crate) fn build(
    node: &str,
    resources: &Resources<'_, istio_workload::Workload>,
    service_resources: &Resources<'_, istio_workload::Service>,
) -> MeshView {
    let mut workloads = Vec::new();
    let mut external = Vec::new();
    for (name, w) in resources {
        decode(name, w, &mut workloads, &mut external);
    }
    let mut services = Vec::new();
    for (name, svc) in service_resources {
        let key = format!("{}/{}", svc.namespace, svc.hostname);
        let service_name = Arc::new(ServiceName::new(&svc.hostname, &svc.name, &svc.namespace));
        let export_to = ExportTo::from_xds(&svc.export_to);
        let waypoint = svc.waypoint.as_ref().and_then(waypoint_addr);
        for port in &svc.ports {
            let Ok(service_port) = u16::try_from(port.service_port) else {
                continue;
            };
            let endpoints: Vec<(String, u16)> = resources
                .iter()
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
                    let uid: &str = if w.uid.is_empty() { resource } else { &w.uid };
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
                    export_to: export_to.clone(),
                    passthrough: svc.passthrough,
                });
            }
        }
    }
    MeshView::new(node, workloads, services).with_external(external)
}

/// The HBONE address of a service's waypoint: an IP address and a port
/// (a hostname waypoint, or one without a port, is not supported and
/// ignored).
fn waypoint_addr(gw: &istio_workload::GatewayAddress) -> Option<SocketAddr> {
    let (ip, port) = gateway_ip_port(gw)?;
    Some(SocketAddr::new(ip, port?))
}
