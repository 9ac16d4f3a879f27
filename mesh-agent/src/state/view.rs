//! The agent's view of the mesh, from the Address and Authorization xDS:
//! workloads, services (one entry per VIP:port) and authorization policies.
//! Built by [`super::xds`], published on a watch channel, read by routing
//! (hop ②, crate::route), the inbound checks (hop ④) and telemetry.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    ops::{Deref, DerefMut},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use mesh_hbone::Identity;
use mesh_xds::workload::Workload;

/// A workload of the Address xDS (the model shared with the waypoint) and
/// the SPIFFE identity it presents; a workload whose fields form no
/// identity is not in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    pub workload: Workload,
    pub identity: Identity,
}

impl WorkloadInfo {
    /// `None` when the workload's fields form no SPIFFE identity.
    pub fn new(workload: Workload) -> Option<Self> {
        let identity = Identity::new(
            &workload.trust_domain,
            &workload.namespace,
            &workload.service_account,
        )
        .ok()?;
        Some(Self { workload, identity })
    }
}

impl Deref for WorkloadInfo {
    type Target = Workload;

    fn deref(&self) -> &Workload {
        &self.workload
    }
}

impl DerefMut for WorkloadInfo {
    fn deref_mut(&mut self) -> &mut Workload {
        &mut self.workload
    }
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

/// Everything the agent of `node` knows about the mesh, immutable once
/// built (a new view replaces it on every xDS change) but for the
/// round-robin counter. `MeshView::default()` is the view without a
/// control plane: empty, so every destination is outside the mesh.
#[derive(Debug, Default)]
pub struct MeshView {
    pub node: String,
    /// Authorization policies, evaluated at hop ④.
    pub policies: crate::policy::PolicySet,
    workloads: HashMap<String, WorkloadInfo>,
    by_ip: HashMap<IpAddr, String>,
    services: HashMap<SocketAddr, ServiceInfo>,
    /// Round robin over a service's endpoints ([`MeshView::next_pick`]).
    next: AtomicUsize,
    /// Counts the views published since start (the first is 1; 0: built
    /// outside the publisher, as tests do). The policy sync records the
    /// generation it wrote to the kernel, so `/stats/mesh` can tell
    /// whether the kernel holds the view being served.
    pub generation: u64,
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
            generation: 0,
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

    /// The service entry for this VIP:port, if it is one.
    pub fn service(&self, vip: SocketAddr) -> Option<&ServiceInfo> {
        self.services.get(&vip)
    }

    /// The next round-robin pick among `n` endpoints (`n` > 0). The
    /// counter is the view's only mutable state.
    pub fn next_pick(&self, n: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % n
    }
}
