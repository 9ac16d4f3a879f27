//! Builds the agent's [`MeshView`] from the xDS snapshot (Istio's Address
//! and Authorization resources): workloads in the model shared with the
//! waypoint (`mesh_xds::workload`), services as one entry per VIP:port with
//! their endpoints' target ports, and the policy set.
//!
//! A workload whose fields form no SPIFFE identity is kept only when it
//! is no mesh workload and has an address or a hostname: a ServiceEntry
//! endpoint ([`ExternalEndpoint`]). A mesh workload always has an
//! identity.
//!
//! Beyond that, from istiod's fields: a waypoint named by hostname is
//! resolved to a waypoint pod (crate::state::waypoint); an UNHEALTHY
//! workload is no service endpoint unless the service's health policy is
//! ALLOW_ALL; a service of visibility NAMESPACE is exported to its own
//! namespace only; an address range (`NetworkAddress.length`) is no VIP.
use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use mesh_xds::{
    proto::istio_workload::{self, WorkloadStatus},
    workload::{ip_from_bytes, Workload, DEFAULT_HBONE_PORT},
    XdsResource, XdsSnapshot,
};

use super::{
    details::{is_range, ServiceDetails, Waypoint, WorkloadDetails},
    view::{
        EndpointAddress, ExportTo, ExternalEndpoint, MeshView, ServiceInfo, ServiceName,
        WorkloadInfo,
    },
    waypoint::WaypointResolver,
};

/// Decodes one workload into `workloads` (a pod with its identity, and
/// the index of its resource) or `external` (an endpoint outside the
/// mesh); anything else is dropped.
fn decode(
    index: usize,
    resource: &str,
    w: &istio_workload::Workload,
    workloads: &mut Vec<(WorkloadInfo, usize)>,
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
        if let Some(mut info) = WorkloadInfo::new(workload) {
            info.details = Arc::new(WorkloadDetails::from_proto(w));
            workloads.push((info, index));
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

/// The routing view for the agent of `node`. Address resources of a kind
/// this agent does not know are counted and skipped.
pub fn view(node: &str, snapshot: &XdsSnapshot) -> MeshView {
    let workloads: Vec<_> = snapshot.workloads().collect();
    let services: Vec<_> = snapshot.services().collect();
    let policies = crate::policy::PolicySet::new(snapshot.authorizations().map(|(_, p)| p.clone()));
    let skipped = snapshot
        .resources(mesh_xds::ADDRESS_TYPE_URL)
        .filter(|(_, r)| matches!(&*r.resource, XdsResource::Other(_)))
        .count();
    let mut view = build(node, &workloads, &services).with_policies(policies);
    view.skipped_addresses = skipped;
    view
}

/// Workloads and services (resource name, resource) of the Address xDS.
type Resources<'a, T> = [(&'a str, &'a T)];

/// The view of the Address resources, without policies.
pub(crate) fn build(
    node: &str,
    resources: &Resources<'_, istio_workload::Workload>,
    service_resources: &Resources<'_, istio_workload::Service>,
) -> MeshView {
    let mut decoded = Vec::new();
    let mut external = Vec::new();
    for (index, (name, w)) in resources.iter().enumerate() {
        decode(index, name, w, &mut decoded, &mut external);
    }
    let (waypoints, services) = {
        let resolver = WaypointResolver::new(
            service_resources.iter().map(|(_, s)| *s),
            decoded.iter().map(|(info, i)| (info, resources[*i].1)),
        );
        let waypoints: Vec<Option<Waypoint>> = decoded
            .iter()
            .map(|(_, i)| {
                resources[*i]
                    .1
                    .waypoint
                    .as_ref()
                    .and_then(|gw| resolver.resolve(gw))
            })
            .collect();
        let services = service_entries(resources, service_resources, &resolver);
        (waypoints, services)
    };
    let workloads: Vec<WorkloadInfo> = decoded
        .into_iter()
        .zip(waypoints)
        .map(|((mut info, _), waypoint)| {
            info.waypoint = waypoint;
            info
        })
        .collect();
    MeshView::new(node, workloads, services).with_external(external)
}

/// Per service key (`<namespace>/<hostname>`), the indexes of the
/// workload resources that name it, in resource order: one pass over the
/// workloads, so building every service's endpoints costs the workloads'
/// memberships rather than services × workloads.
fn members<'a>(
    resources: &'a Resources<'_, istio_workload::Workload>,
) -> HashMap<&'a str, Vec<usize>> {
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (_, w)) in resources.iter().enumerate() {
        for key in w.services.keys() {
            index.entry(key.as_str()).or_default().push(i);
        }
    }
    index
}

/// One entry per VIP:port of every Service resource.
fn service_entries(
    resources: &Resources<'_, istio_workload::Workload>,
    service_resources: &Resources<'_, istio_workload::Service>,
    resolver: &WaypointResolver<'_>,
) -> Vec<ServiceInfo> {
    let members = members(resources);
    let mut services = Vec::new();
    for (name, svc) in service_resources {
        let key = format!("{}/{}", svc.namespace, svc.hostname);
        let of_service = members.get(key.as_str()).map_or(&[][..], Vec::as_slice);
        let service_name = Arc::new(ServiceName::new(&svc.hostname, &svc.name, &svc.namespace));
        let waypoint = svc.waypoint.as_ref().and_then(|gw| resolver.resolve(gw));
        // A waypoint named but resolved to nothing: routing must refuse,
        // not go around it.
        let waypoint_addr = waypoint.as_ref().map(|w| {
            w.resolved.unwrap_or_else(|| {
                let port = svc.waypoint.as_ref().map_or(0, |gw| gw.hbone_mtls_port);
                super::waypoint::unresolved(
                    u16::try_from(port)
                        .ok()
                        .filter(|p| *p != 0)
                        .unwrap_or(DEFAULT_HBONE_PORT),
                )
            })
        });
        let details = Arc::new(ServiceDetails::from_proto(svc, waypoint));
        let mut export_to = ExportTo::from_xds(&svc.export_to);
        if details.namespace_only() {
            export_to = export_to.within(&svc.namespace);
        }
        let only_healthy = details.only_healthy();
        for port in &svc.ports {
            let Ok(service_port) = u16::try_from(port.service_port) else {
                continue;
            };
            let endpoints: Vec<(String, u16)> = of_service
                .iter()
                .map(|i| &resources[*i])
                .filter(|(_, w)| !(only_healthy && w.status == WorkloadStatus::Unhealthy as i32))
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
                .filter(|a| !is_range(a))
                .filter_map(|a| ip_from_bytes(&a.address))
            {
                services.push(ServiceInfo {
                    key: name.to_string(),
                    name: Arc::clone(&service_name),
                    vip: SocketAddr::new(vip, service_port),
                    endpoints: endpoints.clone(),
                    waypoint: waypoint_addr,
                    export_to: export_to.clone(),
                    passthrough: svc.passthrough,
                    app_protocol: port.app_protocol,
                    details: Arc::clone(&details),
                });
            }
        }
    }
    services
}
