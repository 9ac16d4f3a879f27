//! ServiceEntry hosts as Services: istiod's service registry treats a
//! ServiceEntry host like a Kubernetes Service (VIPs, ports, endpoints,
//! a waypoint), so the model does too. [`External`] says how its
//! endpoints are found and who sees it.
use std::{collections::BTreeMap, net::IpAddr};

/// `spec.location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Location {
    /// `MESH_EXTERNAL` (Istio's default): endpoints are outside the mesh,
    /// reached in plaintext (or TLS the application or a DestinationRule
    /// originates), never over HBONE.
    #[default]
    MeshExternal,
    /// `MESH_INTERNAL`: endpoints are part of the mesh (a `workloadSelector`
    /// picks mesh pods, reached over HBONE).
    MeshInternal,
}

/// `spec.resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    /// `NONE` (Istio's default): connections go to the address the client
    /// dialled.
    #[default]
    None,
    /// `STATIC`: the inline endpoints' addresses (or the selected pods).
    Static,
    /// `DNS`: endpoints (or the host itself) resolved by DNS, every
    /// address an endpoint (Envoy's `STRICT_DNS`).
    Dns,
    /// `DNS_ROUND_ROBIN`: the first address DNS returns (Envoy's
    /// `LOGICAL_DNS`).
    DnsRoundRobin,
}

/// An inline endpoint's address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EndpointAddress {
    Ip(IpAddr),
    /// A DNS name (only with DNS resolutions).
    Host(String),
}

/// One of `spec.endpoints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntryEndpoint {
    pub address: EndpointAddress,
    /// Port name → the endpoint's port (`ports` of the WorkloadEntry
    /// form); a service port without an entry uses its target port.
    pub ports: BTreeMap<String, u16>,
    pub labels: BTreeMap<String, String>,
    /// 0: unset.
    pub weight: u32,
}

/// What makes a model Service a ServiceEntry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    /// `<namespace>/<name>` of the ServiceEntry.
    pub entry: String,
    pub location: Location,
    pub resolution: Resolution,
    /// `spec.endpoints` as written. An IP endpoint that is a pod's address
    /// is that pod: the pod lists the service in its `services` (as
    /// selected pods do) and the workload xDS publishes no second
    /// workload for it.
    pub endpoints: Vec<ServiceEntryEndpoint>,
    /// `spec.workloadSelector.labels`: pods of the entry's namespace that
    /// are its endpoints (instead of `endpoints`).
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.exportTo` as written ([`super::visibility`]); empty: all.
    pub export_to: Vec<String>,
    pub subject_alt_names: Vec<String>,
    /// Service port → port name (`ports[].name`), for endpoint port maps.
    pub port_names: BTreeMap<u16, String>,
    /// True when the VIPs were allocated by the control plane (no
    /// `spec.addresses`), as Istio's DNS auto-allocation does.
    pub allocated_vips: bool,
}

/// One of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntryPort {
    pub number: u16,
    /// Required, unique in the entry; endpoints' `ports` maps refer to it.
    pub name: String,
    /// As written (`HTTP`, `HTTPS`, `GRPC`, `TLS`, …), checked against
    /// Istio's protocol names; `None` when unset.
    pub protocol: Option<String>,
    /// `targetPort`; `None`: the endpoints' port is `number`.
    pub target_port: Option<u16>,
}

impl ServiceEntryPort {
    /// True for `UDP`: not carried by the mesh (it captures TCP only).
    pub fn is_udp(&self) -> bool {
        self.protocol
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("udp"))
    }
}

/// A validated ServiceEntry `spec` (hosts and `exportTo` are on
/// [`super::ServiceEntry`] itself).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceEntrySpec {
    /// `spec.addresses`: single addresses (`10.0.0.1`, `10.0.0.1/32`)
    /// and CIDR ranges, in order. Only single addresses become VIPs.
    pub addresses: Vec<crate::model::authz::IpBlock>,
    pub ports: Vec<ServiceEntryPort>,
    pub location: Location,
    pub resolution: Resolution,
    pub endpoints: Vec<ServiceEntryEndpoint>,
    /// `workloadSelector.labels`.
    pub workload_selector: Option<BTreeMap<String, String>>,
    pub subject_alt_names: Vec<String>,
}

impl ServiceEntrySpec {
    /// The addresses that are single hosts (/32, /128): the VIPs.
    pub fn vips(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = vec![];
        for block in &self.addresses {
            let host = if block.address.is_ipv4() { 32 } else { 128 };
            if block.prefix_len == host && !out.contains(&block.address) {
                out.push(block.address);
            }
        }
        out
    }

    /// The addresses that are ranges (CIDRs wider than one host).
    pub fn ranges(&self) -> impl Iterator<Item = &crate::model::authz::IpBlock> {
        self.addresses
            .iter()
            .filter(|b| b.prefix_len < if b.address.is_ipv4() { 32 } else { 128 })
    }
}
