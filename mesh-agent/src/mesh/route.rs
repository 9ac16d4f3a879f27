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
    sync::atomic::{AtomicUsize, Ordering},
};

use mesh_hbone::Identity;

/// A pod, as far as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub identity: Identity,
    pub node: String,
    pub ips: Vec<IpAddr>,
    /// Captured and reachable over HBONE (tunnel protocol HBONE).
    pub mesh: bool,
    /// Where HBONE for this workload goes (its node's agent).
    pub gateway: Option<SocketAddr>,
    /// `<ns>/<name>` of the selector-scoped authorization policies that
    /// name this workload.
    pub authorization_policies: Vec<String>,
}

/// One port of a Service VIP and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `<namespace>/<hostname>`.
    pub key: String,
    pub vip: SocketAddr,
    /// (workload uid, target port).
    pub endpoints: Vec<(String, u16)>,
}

/// Where a captured connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Connect to this address directly (passthrough or local delivery).
    Direct {
        dst: SocketAddr,
        reason: &'static str,
    },
    /// HBONE through `gateway`, CONNECT to `authority`.
    Hbone {
        gateway: SocketAddr,
        authority: SocketAddr,
        src: Identity,
        dst: Identity,
    },
    /// Nowhere to go (e.g. a service without endpoints).
    Refuse { reason: String },
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

    pub fn workloads(&self) -> impl Iterator<Item = &WorkloadInfo> {
        self.workloads.values()
    }

    /// Every service VIP:port and its endpoints (workload uid, target port).
    pub fn service_endpoints(&self) -> impl Iterator<Item = (SocketAddr, &[(String, u16)])> {
        self.services
            .values()
            .map(|s| (s.vip, s.endpoints.as_slice()))
    }

    pub fn workload_count(&self) -> usize {
        self.workloads.len()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Resolves a service VIP to one endpoint address, round robin.
    fn resolve_service(&self, dst: SocketAddr) -> Option<Result<SocketAddr, String>> {
        let service = self.services.get(&dst)?;
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
            return Some(Err(format!("service {} has no endpoints", service.key)));
        }
        let pick = self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        Some(Ok(SocketAddr::from(endpoints[pick])))
    }

    /// Decides where a connection from `src` (a pod on this node) to `dst`
    /// (its original destination) goes.
    pub fn route(&self, src: IpAddr, dst: SocketAddr) -> Route {
        let dst = match self.resolve_service(dst) {
            Some(Ok(endpoint)) => endpoint,
            Some(Err(reason)) => return Route::Refuse { reason },
            None => dst,
        };
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
mod tests {
    use super::*;

    fn workload(name: &str, ip: &str, node: &str, mesh: bool) -> WorkloadInfo {
        WorkloadInfo {
            uid: format!("Kubernetes//Pod/default/{name}"),
            name: name.into(),
            namespace: "default".into(),
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
            authorization_policies: Vec::new(),
        }
    }

    fn view() -> MeshView {
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
                vip: "10.96.0.10:80".parse().unwrap(),
                endpoints: vec![
                    ("Kubernetes//Pod/default/b".into(), 8080),
                    ("Kubernetes//Pod/default/c".into(), 8080),
                ],
            }],
        )
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
}
