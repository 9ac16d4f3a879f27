//! Hop ②: where a captured connection goes, a function of the mesh view
//! (crate::state::view) alone.
//!
//! Rules, in order:
//! 0. a Service VIP:port whose service uses a waypoint is tunnelled to the
//!    waypoint, VIP:port unchanged (the waypoint picks the endpoint);
//! 1. a Service VIP:port is replaced by one of its endpoints (round robin)
//!    and the service port by the endpoint's target port;
//! 2. a destination outside the mesh (unknown address, or a pod that is not
//!    a mesh workload) is reached directly: passthrough;
//! 3. a mesh workload on this node is reached directly (local delivery;
//!    the bytes never leave the node);
//! 4. a mesh workload on another node is reached over HBONE through that
//!    node's agent, presenting the source pod's identity and expecting the
//!    destination's.
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use mesh_hbone::Identity;

use crate::state::view::{MeshView, ServiceInfo, ServiceName};

/// Why a connection goes straight to its destination, outside the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthroughReason {
    /// Not a mesh workload (unknown address, or a pod outside the mesh).
    OutsideMesh,
    /// The destination is in the mesh but the source has no mesh identity
    /// to present.
    NoSourceIdentity,
}

impl fmt::Display for PassthroughReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PassthroughReason::OutsideMesh => "passthrough: destination outside the mesh",
            PassthroughReason::NoSourceIdentity => "passthrough: source has no mesh identity",
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
    /// `workload` is the destination's uid.
    #[error("no HBONE gateway known for {workload}")]
    NoGateway { workload: String },
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
    /// Nowhere to go.
    Refuse(RefuseReason),
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Passthrough { why, .. } => why.fmt(f),
            Route::Local { .. } => f.write_str("local delivery: destination on this node"),
            Route::Hbone { gateway, .. } => write!(f, "HBONE through {gateway}"),
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
    /// The address the agent connects or tunnels to (the chosen endpoint).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        match &self.route {
            Route::Passthrough { dst, .. } | Route::Local { dst } => Some(*dst),
            Route::Hbone { authority, .. } => Some(*authority),
            Route::Refuse(_) => None,
        }
    }
}

/// Decides where a connection from `src` (a pod on this node) to `dst`
/// (its original destination) goes, naming the service the VIP belonged
/// to.
pub fn resolve(view: &MeshView, src: IpAddr, dst: SocketAddr) -> Resolved {
    if let Some(resolved) = via_waypoint(view, src, dst) {
        return resolved;
    }
    let (service, dst) = match view.service(dst) {
        Some(service) => match pick_endpoint(view, service, dst) {
            Ok(endpoint) => (Some(Arc::clone(&service.name)), endpoint),
            Err(reason) => {
                return Resolved {
                    route: Route::Refuse(reason),
                    service: Some(Arc::clone(&service.name)),
                }
            }
        },
        None => (None, dst),
    };
    Resolved {
        route: route_endpoint(view, src, dst),
        service,
    }
}

/// [`resolve`] without the service.
#[cfg(test)]
pub fn route(view: &MeshView, src: IpAddr, dst: SocketAddr) -> Route {
    resolve(view, src, dst).route
}

/// One endpoint address of `service`, round robin, in `dst`'s address
/// family when the workload has one.
fn pick_endpoint(
    view: &MeshView,
    service: &ServiceInfo,
    dst: SocketAddr,
) -> Result<SocketAddr, RefuseReason> {
    let endpoints: Vec<(IpAddr, u16)> = service
        .endpoints
        .iter()
        .filter_map(|(uid, port)| {
            let w = view.workload(uid)?;
            let ip = w
                .ips
                .iter()
                .find(|ip| ip.is_ipv4() == dst.is_ipv4())
                .or(w.ips.first())?;
            Some((*ip, *port))
        })
        .collect();
    if endpoints.is_empty() {
        return Err(RefuseReason::NoEndpoints {
            service: service.key.clone(),
        });
    }
    Ok(SocketAddr::from(endpoints[view.next_pick(endpoints.len())]))
}

/// Rule 0. Traffic from the waypoint itself, or from a source without a
/// mesh identity, is routed as if there were no waypoint.
fn via_waypoint(view: &MeshView, src: IpAddr, dst: SocketAddr) -> Option<Resolved> {
    let service = view.service(dst)?;
    let waypoint = service.waypoint?;
    if waypoint.ip() == src {
        return None;
    }
    let source = view.workload_by_ip(src).filter(|w| w.mesh)?;
    let route = match view.workload_by_ip(waypoint.ip()) {
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
    };
    Some(Resolved {
        route,
        service: Some(Arc::clone(&service.name)),
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
    if target.node == view.node {
        return Route::Local { dst };
    }
    let Some(source) = view.workload_by_ip(src).filter(|w| w.mesh) else {
        return Route::Passthrough {
            dst,
            why: PassthroughReason::NoSourceIdentity,
        };
    };
    match target.gateway {
        Some(gateway) => Route::Hbone {
            gateway,
            authority: dst,
            src: source.identity.clone(),
            dst: target.identity.clone(),
        },
        None => Route::Refuse(RefuseReason::NoGateway {
            workload: target.uid.clone(),
        }),
    }
}

#[cfg(test)]
mod tests;
