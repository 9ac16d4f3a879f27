//! The mesh as the control plane understands it, independent of any wire
//! format: what [`crate::source`] produces from Kubernetes/Istio YAML and
//! what [`crate::translate`] turns into the resources the proxies receive.
//!
//! Only pods of namespaces labelled `istio.io/dataplane-mode=ambient` (and
//! not opted out with the same label set to `none` on the pod) are mesh
//! workloads; other pods still appear as endpoints of services with
//! `mesh: false` so clients can reach them in plaintext.
pub mod authz;
pub mod ingress;
pub mod routing;
pub mod service_entry;
pub mod visibility;
pub mod waypoint;

use std::{collections::BTreeMap, net::IpAddr};

pub use authz::AuthorizationPolicy;
pub use ingress::IngressGateway;
pub use routing::{DestinationRule, ServiceEntry, VirtualService};
pub use waypoint::{Waypoint, WaypointRef};

/// `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identity {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `Kubernetes//Pod/<namespace>/<name>` (Istio's workload uid form).
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub ips: Vec<IpAddr>,
    /// `spec.nodeName`.
    pub node: String,
    pub labels: BTreeMap<String, String>,
    /// True when the pod is enrolled in the mesh (ambient namespace, not opted out).
    pub mesh: bool,
    /// Names (`<namespace>/<hostname>`) of the services selecting this pod,
    /// with their port mapping service port → target port.
    pub services: BTreeMap<String, BTreeMap<u16, u16>>,
    /// Ports the kubelet's probes connect to (`httpGet`, `tcpSocket`,
    /// `grpc` of every container's liveness, readiness and startup probe),
    /// sorted, no duplicates: plaintext from the node address that a STRICT
    /// pod still takes.
    pub probe_ports: Vec<u16>,
}

/// A Kubernetes Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    /// `<name>.<namespace>.svc.<cluster_domain>`.
    pub hostname: String,
    /// ClusterIP(s), the VIPs clients connect to.
    pub vips: Vec<IpAddr>,
    /// service port → target port.
    pub ports: BTreeMap<u16, u16>,
    /// service port → its `appProtocol`, else its `name` (what Istio
    /// infers the protocol from: `http2-web`, `grpc`, `h2c`, …); ports
    /// with neither are absent.
    pub port_protocols: BTreeMap<u16, String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// The waypoint this service's traffic goes through (`istio.io/use-waypoint`
    /// on the Service, else on its Namespace), when one is named; whether
    /// it exists is checked against [`MeshState::waypoints`].
    pub waypoint: Option<WaypointRef>,
    /// `Some` for a ServiceEntry host ([`service_entry`]): `hostname` is
    /// the host, `name` the ServiceEntry's name.
    pub external: Option<service_entry::External>,
}

/// A node and the address its agent is reached on for HBONE (port 15008).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub address: IpAddr,
}

/// PeerAuthentication mTLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtlsMode {
    #[default]
    Permissive,
    Strict,
    Disable,
}

/// A PeerAuthentication, resolved to its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthentication {
    pub name: String,
    /// The root namespace (mesh-wide) or the policy's namespace.
    pub namespace: String,
    /// Empty: namespace-wide (or mesh-wide in the root namespace).
    pub selector: BTreeMap<String, String>,
    pub mode: MtlsMode,
}

/// Everything the control plane serves, rebuilt from the source on change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshState {
    pub trust_domain: String,
    /// Suffix of service hostnames (`<name>.<ns>.svc.<cluster_domain>`);
    /// empty means `cluster.local`.
    pub cluster_domain: String,
    pub workloads: BTreeMap<String, Workload>,
    pub services: BTreeMap<String, Service>,
    pub nodes: BTreeMap<String, Node>,
    pub peer_authentications: Vec<PeerAuthentication>,
    /// In file order, then document order.
    pub authorization_policies: Vec<AuthorizationPolicy>,
    /// `networking.istio.io` VirtualServices, in file order, then document
    /// order (also kept raw in the snapshot, as written).
    pub virtual_services: Vec<VirtualService>,
    /// DestinationRules, in the same order (also kept raw).
    pub destination_rules: Vec<DestinationRule>,
    /// ServiceEntries, in the same order (also kept raw); each host is
    /// also one of [`Self::services`] ([`service_entry`]).
    pub service_entries: Vec<ServiceEntry>,
    /// Waypoints by `<namespace>/<name>`.
    pub waypoints: BTreeMap<String, Waypoint>,
    /// `networking.istio.io` Gateways (ingress), in file order, then
    /// document order.
    pub ingress_gateways: Vec<IngressGateway>,
}

impl MeshState {
    /// [`Self::cluster_domain`], `cluster.local` when unset.
    pub fn cluster_domain(&self) -> &str {
        if self.cluster_domain.is_empty() {
            "cluster.local"
        } else {
            &self.cluster_domain
        }
    }

    /// The waypoint `r` names, if it exists.
    pub fn waypoint(&self, r: &WaypointRef) -> Option<&Waypoint> {
        self.waypoints.get(&r.key())
    }

    /// The first pod of `waypoint` with an address (pods are kept sorted),
    /// and that address: where clients send the services' traffic.
    pub fn waypoint_address(&self, waypoint: &Waypoint) -> Option<(&Workload, IpAddr)> {
        waypoint.pods.iter().find_map(|uid| {
            let w = self.workloads.get(uid)?;
            w.ips.first().map(|ip| (w, *ip))
        })
    }

    /// The existing waypoint `svc` is attached to.
    pub fn service_waypoint(&self, svc: &Service) -> Option<&Waypoint> {
        svc.waypoint.as_ref().and_then(|r| self.waypoint(r))
    }
}
