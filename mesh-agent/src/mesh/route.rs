//! The agent's view of the mesh (from xDS), and hop ② proper: where a
//! captured connection goes.
//!
//! Rules, in order:
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
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use mesh_hbone::Identity;

/// A pod, as far as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    pub uid: String,
    /// The pod's name.
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    /// The owning workload (Deployment, …) as Istio names it; what
    /// telemetry reports as `*_workload`.
    pub workload_name: String,
    /// Istio's canonical service name and revision (telemetry's app/version).
    pub canonical_name: String,
    pub canonical_revision: String,
    /// `<namespace>/<name>` of the policies selecting this workload.
    pub authorization_policies: Vec<String>,
    pub identity: Identity,
    pub node: String,
    pub ips: Vec<IpAddr>,
    /// Captured and reachable over HBONE (tunnel protocol HBONE).
    pub mesh: bool,
    /// Where HBONE for this workload goes (its node's agent).
    pub gateway: Option<SocketAddr>,
    /// Ports the kubelet's probes connect to (this mesh's `probe_ports`
    /// extension of the Workload resource; empty from istiod).
    pub probe_ports: Vec<u16>,
}

/// Who a Service is, as telemetry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    /// `reviews.default.svc.cluster.local`.
    pub hostname: String,
    /// `reviews`.
    pub name: String,
    pub namespace: String,
}

/// One port of a Service VIP and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `<namespace>/<hostname>`.
    pub key: String,
    /// Shared by every VIP:port entry of the service, so routing can hand it
    /// to telemetry without copying strings.
    pub name: Arc<ServiceName>,
    pub vip: SocketAddr,
    /// (workload uid, target port).
    pub endpoints: Vec<(String, u16)>,
    /// The waypoint (its HBONE address) this service's traffic is handed
    /// to (`istio.io/use-waypoint`), if any.
    pub waypoint: Option<SocketAddr>,
}

/// Where a captured connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Connect to this address directly (passthrough or local delivery).
    Direct {
        dst: SocketAddr,
        reason: &'static str,
    },
    /// HBONE through `gateway`, CONNECT to `authority` (a pod address, or
    /// the service VIP:port when `gateway` is the service's waypoint).
    Hbone {
        gateway: SocketAddr,
        authority: SocketAddr,
        src: Identity,
        dst: Identity,
    },
    /// Nowhere to go (e.g. a service without endpoints).
    Refuse { reason: String },
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
            Route::Direct { dst, .. } => Some(*dst),
            Route::Hbone { authority, .. } => Some(*authority),
            Route::Refuse { .. } => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct MeshView {
    pub node: String,
    /// Authorization policies, evaluated at hop ④.
    pub policies: crate::policy::PolicySet,
    workloads: HashMap<String, WorkloadInfo>,
    by_ip: HashMap<IpAddr, String>,
    services: HashMap<SocketAddr, ServiceInfo>,
    next: AtomicUsize,
}

impl MeshView {
    pub fn new(node: &str, workloads: Vec<WorkloadInfo>, services: Vec<ServiceInfo>) -> Self {
        let by_ip = workloads
            .iter()
            .flat_map(|w| w.ips.iter().map(move |ip| (*ip, w.uid.clone())))
            .collect();
        Self {
            node: node.to_string(),
            policies: crate::policy::PolicySet::default(),
            by_ip,
            workloads: workloads.into_iter().map(|w| (w.uid.clone(), w)).collect(),
            services: services.into_iter().map(|s| (s.vip, s)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn with_policies(mut self, policies: crate::policy::PolicySet) -> Self {
        self.policies = policies;
        self
    }

    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&WorkloadInfo> {
        self.by_ip.get(&ip).and_then(|uid| self.workloads.get(uid))
    }

    /// Mesh workloads scheduled on this node.
    pub fn local_workloads(&self) -> impl Iterator<Item = &WorkloadInfo> {
        self.workloads
            .values()
            .filter(|w| w.mesh && w.node == self.node)
    }

    /// The workload with Istio uid `uid` (`Kubernetes//Pod/<ns>/<name>`).
    pub fn workload(&self, uid: &str) -> Option<&WorkloadInfo> {
        self.workloads.get(uid)
    }

    pub fn workloads(&self) -> impl Iterator<Item = &WorkloadInfo> {
        self.workloads.values()
    }

    /// Every service VIP:port clients reach directly (no waypoint) and its
    /// endpoints (workload uid, target port). A waypoint's traffic reaches
    /// the endpoints with the waypoint's identity, so what the client may
    /// reach through a VIP with a waypoint is not the endpoints' policy.
    pub fn service_endpoints(&self) -> impl Iterator<Item = (SocketAddr, &[(String, u16)])> {
        self.services
            .values()
            .filter(|s| s.waypoint.is_none())
            .map(|s| (s.vip, s.endpoints.as_slice()))
    }

    pub fn workload_count(&self) -> usize {
        self.workloads.len()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Every VIP:port entry.
    pub fn services(&self) -> impl Iterator<Item = &ServiceInfo> {
        self.services.values()
    }

    /// The service a connection arriving at `workload`'s `port` most likely
    /// came through: the one service whose endpoints name that workload and
    /// target port. HBONE carries the pod address, not the VIP the client
    /// dialled, so this is a guess (ztunnel guesses the same way); two
    /// candidates give `None` rather than a wrong name.
    pub fn guess_service(&self, workload_uid: &str, port: u16) -> Option<Arc<ServiceName>> {
        let mut found: Option<&Arc<ServiceName>> = None;
        for service in self.services.values() {
            if !service
                .endpoints
                .iter()
                .any(|(uid, p)| uid == workload_uid && *p == port)
            {
                continue;
            }
            match found {
                Some(prev) if prev.hostname != service.name.hostname => return None,
                _ => found = Some(&service.name),
            }
        }
        found.cloned()
    }

    /// Resolves a service VIP to one endpoint address, round robin.
    fn resolve_service(
        &self,
        dst: SocketAddr,
    ) -> Option<(Arc<ServiceName>, Result<SocketAddr, String>)> {
        let service = self.services.get(&dst)?;
        Some((Arc::clone(&service.name), self.pick_endpoint(service, dst)))
    }

    fn pick_endpoint(&self, service: &ServiceInfo, dst: SocketAddr) -> Result<SocketAddr, String> {
        let endpoints: Vec<(IpAddr, u16)> = service
            .endpoints
            .iter()
            .filter_map(|(uid, port)| {
                let w = self.workloads.get(uid)?;
                let ip = w
                    .ips
                    .iter()
                    .find(|ip| ip.is_ipv4() == dst.is_ipv4())
                    .or(w.ips.first())?;
                Some((*ip, *port))
            })
            .collect();
        if endpoints.is_empty() {
            return Err(format!("service {} has no endpoints", service.key));
        }
        let pick = self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        Ok(SocketAddr::from(endpoints[pick]))
    }

    /// Decides where a connection from `src` (a pod on this node) to `dst`
    /// (its original destination) goes.
    // The proxy uses `resolve`; this stays for callers that need no service.
    #[allow(dead_code)]
    pub fn route(&self, src: IpAddr, dst: SocketAddr) -> Route {
        self.resolve(src, dst).route
    }

    /// [`MeshView::route`], also naming the service the VIP belonged to.
    pub fn resolve(&self, src: IpAddr, dst: SocketAddr) -> Resolved {
        if let Some(resolved) = self.via_waypoint(src, dst) {
            return resolved;
        }
        let (service, dst) = match self.resolve_service(dst) {
            Some((service, Ok(endpoint))) => (Some(service), endpoint),
            Some((service, Err(reason))) => {
                return Resolved {
                    route: Route::Refuse { reason },
                    service: Some(service),
                }
            }
            None => (None, dst),
        };
        Resolved {
            route: self.route_endpoint(src, dst),
            service,
        }
    }

    /// Rule 0: a Service VIP whose service uses a waypoint is tunnelled to
    /// the waypoint with the VIP:port as `:authority`, unchanged; the
    /// waypoint picks the endpoint (L7 policy lives there). Traffic from the
    /// waypoint itself, or from a source without a mesh identity, is
    /// routed as if there were none.
    fn via_waypoint(&self, src: IpAddr, dst: SocketAddr) -> Option<Resolved> {
        let service = self.services.get(&dst)?;
        let waypoint = service.waypoint?;
        if waypoint.ip() == src {
            return None;
        }
        let source = self.workload_by_ip(src).filter(|w| w.mesh)?;
        let route = match self.workload_by_ip(waypoint.ip()) {
            Some(w) => Route::Hbone {
                gateway: waypoint,
                authority: dst,
                src: source.identity.clone(),
                dst: w.identity.clone(),
            },
            None => Route::Refuse {
                reason: format!(
                    "service {} uses waypoint {waypoint}, which is not a known workload",
                    service.key
                ),
            },
        };
        Some(Resolved {
            route,
            service: Some(Arc::clone(&service.name)),
        })
    }

    /// Rules 2–4, for a destination that is not (or no longer) a VIP.
    fn route_endpoint(&self, src: IpAddr, dst: SocketAddr) -> Route {
        let Some(target) = self.workload_by_ip(dst.ip()).filter(|w| w.mesh) else {
            return Route::Direct {
                dst,
                reason: "passthrough: destination outside the mesh",
            };
        };
        if target.node == self.node {
            return Route::Direct {
                dst,
                reason: "local delivery: destination on this node",
            };
        }
        let Some(source) = self.workload_by_ip(src).filter(|w| w.mesh) else {
            return Route::Direct {
                dst,
                reason: "passthrough: source has no mesh identity",
            };
        };
        match target.gateway {
            Some(gateway) => Route::Hbone {
                gateway,
                authority: dst,
                src: source.identity.clone(),
                dst: target.identity.clone(),
            },
            None => Route::Refuse {
                reason: format!("no HBONE gateway known for {}", target.uid),
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A workload `name` with pod `<name>-pod`, app `name`, version `v1`.
    pub(crate) fn workload(name: &str, ip: &str, node: &str, mesh: bool) -> WorkloadInfo {
        WorkloadInfo {
            uid: format!("Kubernetes//Pod/default/{name}"),
            name: format!("{name}-pod"),
            namespace: "default".into(),
            service_account: name.into(),
            workload_name: name.into(),
            canonical_name: name.into(),
            canonical_revision: "v1".into(),
            authorization_policies: vec![],
            identity: format!("spiffe://cluster.local/ns/default/sa/{name}")
                .parse()
                .unwrap(),
            node: node.into(),
            ips: vec![ip.parse().unwrap()],
            mesh,
            gateway: Some(
                if node == "n1" {
                    "10.0.0.1:15008"
                } else {
                    "10.0.0.2:15008"
                }
                .parse()
                .unwrap(),
            ),
            probe_ports: vec![],
        }
    }

    /// Node n1: mesh pods a, b; n2: mesh pod c, non-mesh pod legacy; service
    /// svc (10.96.0.10:80) → b and c on 8080.
    pub(crate) fn view() -> MeshView {
        MeshView::new(
            "n1",
            vec![
                workload("a", "10.244.1.2", "n1", true),
                workload("b", "10.244.1.3", "n1", true),
                workload("c", "10.244.2.2", "n2", true),
                workload("legacy", "10.244.2.3", "n2", false),
            ],
            vec![ServiceInfo {
                key: "default/svc.default.svc.cluster.local".into(),
                name: Arc::new(ServiceName {
                    hostname: "svc.default.svc.cluster.local".into(),
                    name: "svc".into(),
                    namespace: "default".into(),
                }),
                vip: "10.96.0.10:80".parse().unwrap(),
                endpoints: vec![
                    ("Kubernetes//Pod/default/b".into(), 8080),
                    ("Kubernetes//Pod/default/c".into(), 8080),
                ],
                waypoint: None,
            }],
        )
    }

    /// [`view`] plus a waypoint pod `wp` (not captured) on n2 that the
    /// service uses.
    fn view_with_waypoint() -> MeshView {
        let base = view();
        let mut workloads: Vec<WorkloadInfo> = base.workloads().cloned().collect();
        workloads.push(workload("wp", "10.244.2.9", "n2", false));
        let services = base
            .services()
            .cloned()
            .map(|mut s| {
                s.waypoint = Some("10.244.2.9:15008".parse().unwrap());
                s
            })
            .collect();
        MeshView::new("n1", workloads, services)
    }

    #[test]
    fn service_with_waypoint_is_tunnelled_to_the_waypoint_with_the_vip_as_authority() {
        let view = view_with_waypoint();
        let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
        let r = view.resolve("10.244.1.2".parse().unwrap(), vip);
        assert_eq!(
            r.route,
            Route::Hbone {
                gateway: "10.244.2.9:15008".parse().unwrap(),
                authority: vip,
                src: "spiffe://cluster.local/ns/default/sa/a".parse().unwrap(),
                dst: "spiffe://cluster.local/ns/default/sa/wp".parse().unwrap(),
            }
        );
        assert_eq!(r.service.unwrap().name, "svc");
        // A pod address is not a service: no waypoint (service-addressed only).
        assert!(matches!(
            view.route(
                "10.244.1.2".parse().unwrap(),
                "10.244.1.3:8080".parse().unwrap()
            ),
            Route::Direct { .. }
        ));
        // No kernel deny is compiled for a VIP the waypoint fronts.
        assert_eq!(view.service_endpoints().count(), 0);
    }

    #[test]
    fn the_waypoints_own_traffic_to_the_vip_is_not_sent_back_to_it() {
        let view = view_with_waypoint();
        let r = view.resolve(
            "10.244.2.9".parse().unwrap(),
            "10.96.0.10:80".parse().unwrap(),
        );
        assert!(!matches!(
            r.route,
            Route::Hbone { gateway, .. } if gateway.port() == 15008 && gateway.ip() == "10.244.2.9".parse::<IpAddr>().unwrap()
        ));
    }

    #[test]
    fn cross_node_mesh_traffic_goes_over_hbone_with_both_identities() {
        let route = view().route(
            "10.244.1.2".parse().unwrap(),
            "10.244.2.2:9080".parse().unwrap(),
        );
        let Route::Hbone {
            gateway,
            authority,
            src,
            dst,
        } = route
        else {
            panic!("{route:?}")
        };
        assert_eq!(gateway, "10.0.0.2:15008".parse().unwrap());
        assert_eq!(authority, "10.244.2.2:9080".parse().unwrap());
        assert_eq!(src.to_string(), "spiffe://cluster.local/ns/default/sa/a");
        assert_eq!(dst.to_string(), "spiffe://cluster.local/ns/default/sa/c");
    }

    #[test]
    fn same_node_unknown_and_non_mesh_destinations_go_direct() {
        let v = view();
        let a: IpAddr = "10.244.1.2".parse().unwrap();
        for dst in ["10.244.1.3:80", "192.0.2.1:443", "10.244.2.3:80"] {
            let dst: SocketAddr = dst.parse().unwrap();
            assert!(
                matches!(v.route(a, dst), Route::Direct { dst: d, .. } if d == dst),
                "{dst}"
            );
        }
    }

    #[test]
    fn service_vip_is_spread_round_robin_over_endpoints_with_target_port() {
        let v = view();
        let a: IpAddr = "10.244.1.2".parse().unwrap();
        let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
        let mut seen = vec![];
        for _ in 0..4 {
            match v.route(a, vip) {
                Route::Direct { dst, .. } => seen.push(dst.to_string()),
                Route::Hbone { authority, .. } => seen.push(authority.to_string()),
                other => panic!("{other:?}"),
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "10.244.1.3:8080",
                "10.244.1.3:8080",
                "10.244.2.2:8080",
                "10.244.2.2:8080"
            ]
        );
    }

    #[test]
    fn resolve_names_the_service_only_for_vips_and_keeps_routing() {
        let v = view();
        let a: IpAddr = "10.244.1.2".parse().unwrap();
        let via_vip = v.resolve(a, "10.96.0.10:80".parse().unwrap());
        assert_eq!(via_vip.service.as_ref().unwrap().name, "svc");
        assert!(via_vip.endpoint().is_some());
        let direct = v.resolve(a, "10.244.2.2:9080".parse().unwrap());
        assert_eq!(direct.service, None);
        assert_eq!(direct.route, v.route(a, "10.244.2.2:9080".parse().unwrap()));
    }

    #[test]
    fn inbound_service_is_guessed_from_workload_and_target_port() {
        let v = view();
        let b = "Kubernetes//Pod/default/b";
        assert_eq!(v.guess_service(b, 8080).unwrap().name, "svc");
        assert_eq!(v.guess_service(b, 9999), None);
        assert_eq!(v.guess_service("Kubernetes//Pod/default/a", 8080), None);
    }
}
