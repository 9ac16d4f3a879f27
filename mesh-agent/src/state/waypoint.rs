//! Resolving a waypoint named by the control plane into the HBONE address
//! routing uses (crate::route reads `ServiceInfo::waypoint`, a waypoint
//! pod's address): istiod names a waypoint by its Service
//! (`GatewayAddress.hostname` = {namespace, hostname}); our control plane
//! by a waypoint pod's address.
//!
//! A hostname resolves to one pod of the Service `<namespace>/<hostname>`:
//! a workload of the view (it has an identity and an address) that lists
//! the service among its `services`, healthy ones first, then by uid, so
//! every agent picks the same one. The port is the gateway's
//! `hbone_mtls_port`, else 15008.
use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use mesh_xds::{proto::istio_workload as pb, workload::DEFAULT_HBONE_PORT};

use super::{
    details::{Waypoint, WaypointName},
    view::WorkloadInfo,
};

/// The unspecified address routing gets for a waypoint that resolves to
/// nothing: no workload has it, so the connection is refused.
pub fn unresolved(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port)
}

/// What hostname waypoints resolve against: the Service resources present
/// and, per service key (`<namespace>/<hostname>`), the view's workloads
/// that serve it.
pub struct WaypointResolver<'a> {
    services: HashSet<String>,
    members: HashMap<&'a str, Vec<&'a WorkloadInfo>>,
}

impl<'a> WaypointResolver<'a> {
    /// `services`: the Service resources; `workloads`: each view workload
    /// with the resource it came from (whose `services` lists its services).
    pub fn new(
        services: impl IntoIterator<Item = &'a pb::Service>,
        workloads: impl IntoIterator<Item = (&'a WorkloadInfo, &'a pb::Workload)>,
    ) -> Self {
        let services = services
            .into_iter()
            .map(|s| format!("{}/{}", s.namespace, s.hostname))
            .collect();
        let mut members: HashMap<&str, Vec<&WorkloadInfo>> = HashMap::new();
        for (info, resource) in workloads {
            for key in resource.services.keys() {
                members.entry(key.as_str()).or_default().push(info);
            }
        }
        for list in members.values_mut() {
            list.sort_by(|a, b| (a.details.unhealthy, &a.uid).cmp(&(b.details.unhealthy, &b.uid)));
        }
        Self { services, members }
    }

    /// The waypoint `gw` names, resolved. `None` when `gw` names nothing
    /// usable at all (no destination, a malformed address).
    pub fn resolve(&self, gw: &pb::GatewayAddress) -> Option<Waypoint> {
        let name = WaypointName::of(gw)?;
        let port = u16::try_from(gw.hbone_mtls_port)
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_HBONE_PORT);
        let resolved = match &name {
            WaypointName::Address(ip) => Some(SocketAddr::new(*ip, port)),
            WaypointName::Hostname {
                namespace,
                hostname,
            } => {
                let key = format!("{namespace}/{hostname}");
                self.services
                    .contains(&key)
                    .then(|| self.members.get(key.as_str()))
                    .flatten()
                    .and_then(|pods| {
                        pods.iter()
                            .filter(|w| !w.details.host_network)
                            .find_map(|w| w.ips.iter().find(|ip| !ip.is_unspecified()))
                    })
                    .map(|ip| SocketAddr::new(*ip, port))
            }
        };
        if resolved.is_none() {
            tracing::warn!(
                waypoint = %name,
                "waypoint hostname names no Service with a waypoint pod: its traffic is refused"
            );
        }
        Some(Waypoint { name, resolved })
    }
}
