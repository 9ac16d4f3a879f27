//! Hop ②: where a captured connection goes, a function of the mesh view
//! (crate::state::view) alone.
//!
//! A VIP:port is a service's only for sources of a namespace the service is
//! exported to (a ServiceEntry's `exportTo`); for others it is a plain
//! address. Rules, in order:
//! 0. a Service VIP:port whose service uses a waypoint is tunnelled to the
//!    waypoint, VIP:port unchanged (the waypoint picks the endpoint);
//! 1. a ServiceEntry host without resolution (`passthrough`) goes to the
//!    address dialled; any other Service VIP:port is replaced by one of its
//!    endpoints (round robin) and the service port by the endpoint's
//!    target port: a workload's address (rules 2–4), a ServiceEntry
//!    endpoint's address (direct), or its hostname (`Route::Resolve`,
//!    resolved by the outbound proxy);
//! 2. a destination outside the mesh (unknown address, or a pod that is not
//!    a mesh workload) is reached directly: passthrough; a mesh workload
//!    with its own waypoint (`Workload.waypoint`: a pod labelled
//!    `istio.io/use-waypoint`, as istiod sends it) is tunnelled to that
//!    waypoint with the pod's address as `:authority`, as ztunnel does,
//!    wherever it runs (a waypoint that resolves to nothing refuses);
//! 3. a mesh workload on this node is reached directly (local delivery;
//!    the bytes never leave the node);
//! 4. a mesh workload on another node is reached over HBONE at its own
//!    listener (`<pod IP>:15008`; its `network_gateway` instead when it is
//!    on another network), presenting the source pod's identity and
//!    expecting the destination's.
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use mesh_hbone::Identity;

use crate::state::view::{EndpointAddress, MeshView, ServiceInfo, ServiceName, WorkloadInfo};

/// Why a connection goes straight to its destination, outside the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthroughReason {
    /// Not a mesh workload (unknown address, or a pod outside the mesh).
    OutsideMesh,
    /// The destination is in the mesh but the source has no mesh identity
    /// to present.
    NoSourceIdentity,
    /// A ServiceEntry host with `resolution: NONE`: the address dialled.
    ServiceEntry,
    /// A ServiceEntry endpoint outside the mesh, by address.
    ExternalEndpoint,
}

impl fmt::Display for PassthroughReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PassthroughReason::OutsideMesh => "passthrough: destination outside the mesh",
            PassthroughReason::NoSourceIdentity => "passthrough: source has no mesh identity",
            PassthroughReason::ServiceEntry => "passthrough: service entry without resolution",
            PassthroughReason::ExternalEndpoint => "direct: service entry endpoint",
        })
    }
}

/// Why routing found nowhere to send a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefuseReason {
    /// `service` is `<namespace>/<hostname>`.
    #[error("service {service} has no endpoints")]
    NoEndpoints { service: String },
    #[error("service {service} uses waypoint {waypoint}, which is not a known workload")]
    UnknownWaypoint {
        service: String,
        waypoint: SocketAddr,
    },
    /// `workload` is its uid; `waypoint` as the control plane named it.
    #[error("workload {workload} uses waypoint {waypoint}, which is not a known workload")]
    UnknownWorkloadWaypoint { workload: String, waypoint: String },
}

/// Where a captured connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Connect to `dst` directly; it is outside the mesh.
    Passthrough {
        dst: SocketAddr,
        why: PassthroughReason,
    },
    /// Connect to `dst`, a mesh pod of this node, directly; the agent
    /// authorizes it (hop ④) itself.
    Local { dst: SocketAddr },
    /// HBONE through `gateway`, CONNECT to `authority` (a pod address, or
    /// the service VIP:port when `gateway` is the service's waypoint).
    Hbone {
        gateway: SocketAddr,
        authority: SocketAddr,
        src: Identity,
        dst: Identity,
    },
    /// A ServiceEntry endpoint known by name (`resolution: DNS`): resolve
    /// `host` (crate::dns::resolve) and connect to `port` of an address it
    /// has, outside the mesh.
    Resolve { host: Arc<str>, port: u16 },
    /// Nowhere to go.
    Refuse(RefuseReason),
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Passthrough { why, .. } => why.fmt(f),
            Route::Local { .. } => f.write_str("local delivery: destination on this node"),
            Route::Hbone { gateway, .. } => write!(f, "HBONE through {gateway}"),
            Route::Resolve { host, port } => write!(f, "direct to {host}:{port} (resolved)"),
            Route::Refuse(reason) => reason.fmt(f),
        }
    }
}

/// A routing decision and the service it went through, if the destination
/// was a Service VIP (telemetry's `destination_service`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub route: Route,
    pub service: Option<Arc<ServiceName>>,
}

impl Resolved {
    /// The address the agent connects or tunnels to (the chosen endpoint;
    /// `None` before a name is resolved).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        match &self.route {
            Route::Passthrough { dst, .. } | Route::Local { dst } => Some(*dst),
            Route::Hbone { authority, .. } => Some(*authority),
            Route::Resolve { .. } | Route::Refuse(_) => None,
        }
    }
}

/// Decides where a connection from `src` (a pod on this node) to `dst`
/// (its original destination) goes, naming the service the VIP belonged
/// to. A VIP of a service not exported to the source's namespace is no
/// VIP for it (routed as the plain address).
pub fn resolve(view: &MeshView, src: IpAddr, dst: SocketAddr) -> Resolved {
    let Some(service) = view.visible_service(src, dst) else {
        return Resolved {
            route: route_endpoint(view, src, dst),
            service: None,
        };
    };
    let route = match via_waypoint(view, src, dst, service) {
        Some(route) => route,
        None if service.passthrough => Route::Passthrough {
            dst,
            why: PassthroughReason::ServiceEntry,
        },
        None => match pick_endpoint(view, service, dst) {
            Ok(Picked::Workload(endpoint)) => route_endpoint(view, src, endpoint),
            Ok(Picked::External(endpoint)) => Route::Passthrough {
                dst: endpoint,
                why: PassthroughReason::ExternalEndpoint,
            },
            Ok(Picked::Hostname { host, port }) => Route::Resolve { host, port },
            Err(reason) => Route::Refuse(reason),
        },
    };
    Resolved {
        route,
        service: Some(Arc::clone(&service.name)),
    }
}

/// [`resolve`] without the service.
#[cfg(test)]
pub fn route(view: &MeshView, src: IpAddr, dst: SocketAddr) -> Route {
    resolve(view, src, dst).route
}

/// A service endpoint chosen for one connection.
enum Picked {
    /// A workload of the view (a pod, mesh or not).
    Workload(SocketAddr),
    /// A ServiceEntry endpoint outside the mesh, by address.
    External(SocketAddr),
    /// A ServiceEntry endpoint to resolve.
    Hostname { host: Arc<str>, port: u16 },
}

/// One endpoint of `service`, round robin, in `dst`'s address family when
/// the endpoint has one.
fn pick_endpoint(
    view: &MeshView,
    service: &ServiceInfo,
    dst: SocketAddr,
) -> Result<Picked, RefuseReason> {
    let same_family = |ips: &[IpAddr]| {
        ips.iter()
            .find(|ip| ip.is_ipv4() == dst.is_ipv4())
            .or(ips.first())
            .copied()
    };
    let mut endpoints: Vec<Picked> = service
        .endpoints
        .iter()
        .filter_map(|(uid, port)| {
            if let Some(w) = view.workload(uid) {
                let ip = same_family(&w.ips)?;
                return Some(Picked::Workload(SocketAddr::new(ip, *port)));
            }
            match &view.external_endpoint(uid)?.address {
                EndpointAddress::Ips(ips) => {
                    Some(Picked::External(SocketAddr::new(same_family(ips)?, *port)))
                }
                EndpointAddress::Hostname(host) => Some(Picked::Hostname {
                    host: Arc::clone(host),
                    port: *port,
                }),
            }
        })
        .collect();
    if endpoints.is_empty() {
        return Err(RefuseReason::NoEndpoints {
            service: service.key.clone(),
        });
    }
    let pick = view.next_pick(endpoints.len());
    Ok(endpoints.swap_remove(pick))
}

/// Rule 0. Traffic from the waypoint itself, or from a source without a
/// mesh identity, is routed as if there were no waypoint.
fn via_waypoint(
    view: &MeshView,
    src: IpAddr,
    dst: SocketAddr,
    service: &ServiceInfo,
) -> Option<Route> {
    let waypoint = service.waypoint?;
    if waypoint.ip() == src {
        return None;
    }
    let source = view.workload_by_ip(src).filter(|w| w.mesh)?;
    Some(match view.workload_by_ip(waypoint.ip()) {
        Some(w) => Route::Hbone {
            gateway: waypoint,
            authority: dst,
            src: source.identity.clone(),
            dst: w.identity.clone(),
        },
        None => Route::Refuse(RefuseReason::UnknownWaypoint {
            service: service.key.clone(),
            waypoint,
        }),
    })
}

/// Rule 2's workload waypoint. As for a service's: the waypoint's own
/// traffic and a source without a mesh identity go as if there were none.
fn via_workload_waypoint(
    view: &MeshView,
    src: IpAddr,
    dst: SocketAddr,
    target: &WorkloadInfo,
) -> Option<Route> {
    let waypoint = target.waypoint.as_ref()?;
    let source = view.workload_by_ip(src).filter(|w| w.mesh)?;
    let refuse = || {
        Route::Refuse(RefuseReason::UnknownWorkloadWaypoint {
            workload: target.uid.clone(),
            waypoint: waypoint.name.to_string(),
        })
    };
    let Some(gateway) = waypoint.resolved.filter(|a| !a.ip().is_unspecified()) else {
        return Some(refuse());
    };
    if gateway.ip() == src {
        return None;
    }
    Some(match view.workload_by_ip(gateway.ip()) {
        Some(w) => Route::Hbone {
            gateway,
            authority: dst,
            src: source.identity.clone(),
            dst: w.identity.clone(),
        },
        None => refuse(),
    })
}

/// Rules 2–4, for a destination that is not (or no longer) a VIP.
fn route_endpoint(view: &MeshView, src: IpAddr, dst: SocketAddr) -> Route {
    let Some(target) = view.workload_by_ip(dst.ip()).filter(|w| w.mesh) else {
        return Route::Passthrough {
            dst,
            why: PassthroughReason::OutsideMesh,
        };
    };
    if let Some(route) = via_workload_waypoint(view, src, dst, target) {
        return route;
    }
    if target.node == view.node {
        return Route::Local { dst };
    }
    let Some(source) = view.workload_by_ip(src).filter(|w| w.mesh) else {
        return Route::Passthrough {
            dst,
            why: PassthroughReason::NoSourceIdentity,
        };
    };
    // As in Istio: `network_gateway` is set only for a workload on another
    // network; within one network the tunnel goes to the pod's own
    // listener, on its IPv4 address when it has one (where the agent
    // listens: crate::inbound::pods binds the enrolled pod address).
    let listener_ip = target
        .ips
        .iter()
        .find(|ip| ip.is_ipv4())
        .copied()
        .unwrap_or(dst.ip());
    let gateway = target
        .gateway
        .unwrap_or_else(|| SocketAddr::new(listener_ip, mesh_hbone::HBONE_PORT));
    Route::Hbone {
        gateway,
        authority: dst,
        src: source.identity.clone(),
        dst: target.identity.clone(),
    }
}

#[cfg(test)]
mod tests;
