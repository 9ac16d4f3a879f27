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

pub use super::details::{ServiceDetails, Waypoint, WorkloadDetails};

/// A workload of the Address xDS (the model shared with the waypoint) and
/// the SPIFFE identity it presents; a workload whose fields form no
/// identity is not in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    pub workload: Workload,
    pub identity: Identity,
    /// Its waypoint (`Workload.waypoint`), resolved as a service's is
    /// ([`Waypoint`]); `None` when it has none.
    pub waypoint: Option<Waypoint>,
    /// The rest of the resource: what the agent acts on and what it only
    /// carries (docs/contracts/workload-xds.md).
    pub details: Arc<WorkloadDetails>,
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
        Some(Self {
            workload,
            identity,
            waypoint: None,
            details: Arc::default(),
        })
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

/// A ServiceEntry endpoint outside the mesh: a workload of the Address
/// xDS without a SPIFFE identity that is no mesh workload (tunnel protocol
/// NONE). It presents no identity, is reached in plaintext and is never a
/// source or a policy target; it exists only as a service's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalEndpoint {
    /// The workload uid the service's endpoint list names.
    pub uid: String,
    pub namespace: String,
    pub address: EndpointAddress,
}

/// Where an external endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAddress {
    /// `resolution: STATIC`: its addresses.
    Ips(Vec<IpAddr>),
    /// `resolution: DNS`: a name the outbound proxy resolves per connection
    /// (crate::dns::resolve).
    Hostname(Arc<str>),
}

/// Which namespaces' pods see a service (a ServiceEntry's `exportTo` as
/// the control plane resolved it; a Kubernetes Service is seen by all).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExportTo {
    #[default]
    All,
    /// Only these namespaces (empty: none, `exportTo: ["~"]`).
    Namespaces(Vec<String>),
}

impl ExportTo {
    /// From the xDS field: empty or containing `*` is every namespace; `~`
    /// is no namespace.
    pub fn from_xds(names: &[String]) -> Self {
        if names.is_empty() || names.iter().any(|n| n == "*") {
            return ExportTo::All;
        }
        ExportTo::Namespaces(names.iter().filter(|n| *n != "~").cloned().collect())
    }

    /// Restricted to `namespace` (Istio's visibility NAMESPACE): the
    /// namespaces both allow.
    pub fn within(self, namespace: &str) -> Self {
        match self {
            ExportTo::All => ExportTo::Namespaces(vec![namespace.to_string()]),
            ExportTo::Namespaces(names) => {
                ExportTo::Namespaces(names.into_iter().filter(|n| n == namespace).collect())
            }
        }
    }

    /// Whether a pod of `namespace` sees the service; a source the view
    /// does not know (`None`) sees only services exported to all.
    pub fn visible_to(&self, namespace: Option<&str>) -> bool {
        match self {
            ExportTo::All => true,
            ExportTo::Namespaces(names) => {
                namespace.is_some_and(|ns| names.iter().any(|n| n == ns))
            }
        }
    }
}

/// What kind of service a hostname names, decided from the resource's
/// structure: a Kubernetes Service's hostname is
/// `<name>.<namespace>.svc.<cluster domain>`; any other is a ServiceEntry
/// host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A Kubernetes Service in the cluster domain (`cluster.local`).
    Kubernetes { domain: String },
    /// A ServiceEntry host (`www.googleapis.com`, `*.example.com`).
    External,
}

impl ServiceKind {
    pub fn of(hostname: &str, name: &str, namespace: &str) -> Self {
        let domain = hostname
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(namespace))
            .and_then(|rest| rest.strip_prefix(".svc."))
            .filter(|domain| !domain.is_empty() && !name.is_empty() && !namespace.is_empty());
        match domain {
            Some(domain) => ServiceKind::Kubernetes {
                domain: domain.to_string(),
            },
            None => ServiceKind::External,
        }
    }
}

/// Who a Service is, as telemetry names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    /// `reviews.default.svc.cluster.local`, or a ServiceEntry's host.
    pub hostname: String,
    /// `reviews`; for a ServiceEntry host the host itself, as Istio names
    /// it in telemetry.
    pub name: String,
    /// The Service's, or the ServiceEntry's, namespace.
    pub namespace: String,
    pub kind: ServiceKind,
}

impl ServiceName {
    /// A service's name from its xDS fields: a ServiceEntry host is named
    /// by the host.
    pub fn new(hostname: &str, name: &str, namespace: &str) -> Self {
        let kind = ServiceKind::of(hostname, name, namespace);
        let name = match kind {
            ServiceKind::Kubernetes { .. } => name,
            ServiceKind::External => hostname,
        };
        Self {
            hostname: hostname.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            kind,
        }
    }
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
    /// to (`istio.io/use-waypoint`), if any: a waypoint pod's address, also
    /// when the control plane named the waypoint by hostname
    /// ([`Waypoint`]). A hostname that names no waypoint pod is the
    /// unspecified address (`0.0.0.0`), which is no workload's, so routing
    /// refuses the connection rather than going around the waypoint.
    pub waypoint: Option<SocketAddr>,
    /// Who sees it (routing and DNS answer only for those namespaces).
    pub export_to: ExportTo,
    /// `resolution: NONE`: connections go to the address dialled.
    pub passthrough: bool,
    /// This port's application protocol (`Port.app_protocol`, Istio's
    /// `AppProtocol` number; 0 unknown).
    pub app_protocol: i32,
    /// The rest of the Service resource, shared by its VIP:port entries.
    pub details: Arc<ServiceDetails>,
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
    /// ServiceEntry endpoints outside the mesh, by uid; never in `by_ip`.
    external: HashMap<String, ExternalEndpoint>,
    by_ip: HashMap<IpAddr, String>,
    services: HashMap<SocketAddr, ServiceInfo>,
    /// Round robin over a service's endpoints ([`MeshView::next_pick`]).
    next: AtomicUsize,
    /// Counts the views published since start (the first is 1; 0: built
    /// outside the publisher, as tests do). The policy sync records the
    /// generation it wrote to the kernel, so `/stats/mesh` can tell
    /// whether the kernel holds the view being served.
    pub generation: u64,
    /// Address resources of a kind this agent does not know (neither
    /// workload nor service), skipped.
    pub skipped_addresses: usize,
}

impl MeshView {
    /// A workload on the host network shares its address with others and
    /// is never looked up by it (Istio's `HOST_NETWORK` network mode); no
    /// workload is found at the unspecified address.
    pub fn new(node: &str, workloads: Vec<WorkloadInfo>, services: Vec<ServiceInfo>) -> Self {
        let by_ip = workloads
            .iter()
            .filter(|w| !w.details.host_network)
            .flat_map(|w| {
                w.ips
                    .iter()
                    .filter(|ip| !ip.is_unspecified())
                    .map(move |ip| (*ip, w.uid.clone()))
            })
            .collect();
        Self {
            node: node.to_string(),
            policies: crate::policy::PolicySet::default(),
            by_ip,
            workloads: workloads.into_iter().map(|w| (w.uid.clone(), w)).collect(),
            external: HashMap::new(),
            services: services.into_iter().map(|s| (s.vip, s)).collect(),
            next: AtomicUsize::new(0),
            generation: 0,
            skipped_addresses: 0,
        }
    }

    /// Adds the ServiceEntry endpoints outside the mesh.
    pub fn with_external(mut self, endpoints: Vec<ExternalEndpoint>) -> Self {
        self.external = endpoints.into_iter().map(|e| (e.uid.clone(), e)).collect();
        self
    }

    /// The external endpoint with uid `uid`.
    pub fn external_endpoint(&self, uid: &str) -> Option<&ExternalEndpoint> {
        self.external.get(uid)
    }

    /// The namespace of the workload at `ip`, if the view knows one there.
    pub fn namespace_of(&self, ip: IpAddr) -> Option<&str> {
        self.workload_by_ip(ip).map(|w| w.namespace.as_str())
    }

    /// The service entry for this VIP:port as a client at `src` sees it:
    /// `None` when the service is not exported to the client's namespace.
    pub fn visible_service(&self, src: IpAddr, vip: SocketAddr) -> Option<&ServiceInfo> {
        self.service(vip)
            .filter(|s| s.export_to.visible_to(self.namespace_of(src)))
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
