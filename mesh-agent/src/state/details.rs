//! The parts of Istio's Address resources beyond what routing needs
//! directly: each field istiod sends is decoded here, so the agent can
//! show it (`/config_dump`) and the view can act on the ones it supports.
//! Which are acted on and which are only carried:
//! docs/contracts/workload-xds.md.
use std::net::{IpAddr, SocketAddr};

use mesh_xds::proto::istio_workload::{
    self as pb, gateway_address::Destination, load_balancing::HealthPolicy, service::Visibility,
    NetworkMode, WorkloadStatus,
};

/// How the control plane names a waypoint (`GatewayAddress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaypointName {
    /// A waypoint pod's address.
    Address(IpAddr),
    /// A waypoint Service, `<namespace>/<hostname>` (istiod's form).
    Hostname { namespace: String, hostname: String },
}

impl WaypointName {
    /// `None` for a gateway address without a destination, or with an
    /// address of neither 4 nor 16 bytes.
    pub fn of(gw: &pb::GatewayAddress) -> Option<Self> {
        match gw.destination.as_ref()? {
            Destination::Address(a) => {
                mesh_xds::workload::ip_from_bytes(&a.address).map(WaypointName::Address)
            }
            Destination::Hostname(h) => Some(WaypointName::Hostname {
                namespace: h.namespace.clone(),
                hostname: h.hostname.clone(),
            }),
        }
    }
}

impl std::fmt::Display for WaypointName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaypointName::Address(ip) => ip.fmt(f),
            WaypointName::Hostname {
                namespace,
                hostname,
            } => write!(f, "{namespace}/{hostname}"),
        }
    }
}

/// A waypoint as named on the wire and the HBONE address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waypoint {
    pub name: WaypointName,
    /// A waypoint pod's HBONE address; `None` when a hostname names no
    /// Service with a usable waypoint pod (traffic to the destination is
    /// then refused, never sent around the waypoint).
    pub resolved: Option<SocketAddr>,
}

/// Istio's `LoadBalancing` of a Service, as numbers of its enums.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadBalancing {
    pub routing_preference: Vec<i32>,
    pub mode: i32,
    pub health_policy: i32,
}

/// The fields of a Service resource routing does not read directly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceDetails {
    /// Its waypoint as named and as resolved (routing reads the resolved
    /// address from `ServiceInfo::waypoint`).
    pub waypoint: Option<Waypoint>,
    pub load_balancing: Option<LoadBalancing>,
    /// Istio's `IPFamilies` number (0 automatic).
    pub ip_families: i32,
    /// Names of the `extensions` entries (their content is opaque).
    pub extensions: Vec<String>,
    pub canonical: bool,
    pub ingress_use_waypoint: bool,
    /// `weighted_waypoints`: each waypoint as named, and its weight.
    /// Routing uses the primary `waypoint`, as istiod asks of dataplanes
    /// that do not split by weight.
    pub weighted_waypoints: Vec<(String, u32)>,
    /// Istio's `Visibility` number (0 public, 1 namespace).
    pub visibility: i32,
    pub subject_alt_names: Vec<String>,
    /// Addresses given as ranges (`NetworkAddress.length` shorter than the
    /// address): not VIPs, so no routing entry.
    pub address_ranges: Vec<String>,
}

impl ServiceDetails {
    /// Only healthy endpoints take traffic, unless the service's health
    /// policy admits all (Istio's default is healthy only).
    pub fn only_healthy(&self) -> bool {
        self.load_balancing
            .as_ref()
            .is_none_or(|lb| lb.health_policy != HealthPolicy::AllowAll as i32)
    }

    /// Visible only to clients of its own namespace.
    pub fn namespace_only(&self) -> bool {
        self.visibility == Visibility::Namespace as i32
    }

    pub fn from_proto(svc: &pb::Service, waypoint: Option<Waypoint>) -> Self {
        ServiceDetails {
            waypoint,
            load_balancing: svc.load_balancing.as_ref().map(|lb| LoadBalancing {
                routing_preference: lb.routing_preference.clone(),
                mode: lb.mode,
                health_policy: lb.health_policy,
            }),
            ip_families: svc.ip_families,
            extensions: svc.extensions.iter().map(|e| e.name.clone()).collect(),
            canonical: svc.canonical,
            ingress_use_waypoint: svc.ingress_use_waypoint,
            weighted_waypoints: svc
                .weighted_waypoints
                .iter()
                .map(|w| {
                    let name = w
                        .destination
                        .as_ref()
                        .and_then(WaypointName::of)
                        .map_or_else(String::new, |n| n.to_string());
                    (name, w.weight)
                })
                .collect(),
            visibility: svc.visibility,
            subject_alt_names: svc.subject_alt_names.clone(),
            address_ranges: svc
                .addresses
                .iter()
                .filter(|a| is_range(a))
                .filter_map(|a| {
                    let ip = mesh_xds::workload::ip_from_bytes(&a.address)?;
                    Some(format!("{ip}/{}", a.length.unwrap_or_default()))
                })
                .collect(),
        }
    }
}

/// A `NetworkAddress` whose prefix length makes it a range rather than one
/// address.
pub fn is_range(a: &pb::NetworkAddress) -> bool {
    let width = if a.address.len() == 4 { 32 } else { 128 };
    a.length.is_some_and(|len| len < width)
}

/// Istio's `Locality`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

/// The fields of a Workload resource the shared model
/// (`mesh_xds::workload::Workload`) does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkloadDetails {
    /// `status: UNHEALTHY`: not ready; no service endpoint takes traffic
    /// through it unless the service admits unhealthy endpoints.
    pub unhealthy: bool,
    /// `network_mode: HOST_NETWORK`: its address is shared (the node's);
    /// the view never looks it up by address.
    pub host_network: bool,
    pub network: String,
    /// Istio's `TunnelProtocol` number (1 HBONE, 2 legacy Istio mTLS).
    pub tunnel_protocol: i32,
    /// Istio's `WorkloadType` number.
    pub workload_type: i32,
    pub locality: Option<Locality>,
    /// Relative capacity; `None` is 1.
    pub capacity: Option<u32>,
    pub native_tunnel: bool,
    /// `application_tunnel`: Istio's protocol number and port.
    pub application_tunnel: Option<(i32, u32)>,
    /// Names of the `extensions` entries (their content is opaque).
    pub extensions: Vec<String>,
}

impl WorkloadDetails {
    pub fn from_proto(w: &pb::Workload) -> Self {
        WorkloadDetails {
            unhealthy: w.status == WorkloadStatus::Unhealthy as i32,
            host_network: w.network_mode == NetworkMode::HostNetwork as i32,
            network: w.network.clone(),
            tunnel_protocol: w.tunnel_protocol,
            workload_type: w.workload_type,
            locality: w.locality.as_ref().map(|l| Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                subzone: l.subzone.clone(),
            }),
            capacity: w.capacity.as_ref().map(|c| c.value),
            native_tunnel: w.native_tunnel,
            application_tunnel: w.application_tunnel.as_ref().map(|t| (t.protocol, t.port)),
            extensions: w.extensions.iter().map(|e| e.name.clone()).collect(),
        }
    }
}
