//! The workload model of Istio's Address xDS, decoded once for every
//! consumer (the node agent and the waypoint): a pod as published in an
//! `istio.workload.Workload`, with its addresses as `IpAddr`s and its node
//! agent's HBONE address as a `SocketAddr`.
//!
//! The SPIFFE identity stays as its parts (`trust_domain`, `namespace`,
//! `service_account`): the identity type lives in mesh-hbone, which depends
//! on this crate, so each daemon forms it from these fields.
use std::net::{IpAddr, SocketAddr};

use crate::proto::istio_workload::{
    gateway_address::Destination, GatewayAddress, TunnelProtocol, Workload as WorkloadProto,
};

/// Istio's HBONE port: where a gateway address that names no port
/// (`hbone_mtls_port` 0) accepts tunnels.
pub const DEFAULT_HBONE_PORT: u16 = mesh_common::HBONE_PORT;

/// An address from the wire: 4 bytes IPv4, 16 bytes IPv6, anything else
/// none.
pub fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// The IP address and HBONE port a gateway address names (`None` for the
/// port when it is 0, i.e. not set). A hostname gateway (east-west) needs
/// DNS and is not decoded: `None`.
pub fn gateway_ip_port(gw: &GatewayAddress) -> Option<(IpAddr, Option<u16>)> {
    let Destination::Address(addr) = gw.destination.as_ref()? else {
        return None;
    };
    let port = u16::try_from(gw.hbone_mtls_port).ok().filter(|p| *p != 0);
    Some((ip_from_bytes(&addr.address)?, port))
}

/// One workload (pod) as published in the Address xDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Istio's workload uid (`Kubernetes//Pod/<ns>/<name>`).
    pub uid: String,
    /// The pod's name.
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    /// The trust domain of the workload's SPIFFE identity.
    pub trust_domain: String,
    /// The owning workload (Deployment, …) as Istio names it; empty when
    /// unknown. Telemetry's `*_workload` (see [`Workload::workload_label`]).
    pub workload_name: String,
    /// Istio's canonical service name and revision (telemetry's app/version).
    pub canonical_name: String,
    pub canonical_revision: String,
    pub node: String,
    pub cluster_id: String,
    pub ips: Vec<IpAddr>,
    /// The DNS name to resolve for a workload published without
    /// addresses (a ServiceEntry endpoint with `resolution: DNS`, Istio's
    /// field 21); `None` when empty.
    pub hostname: Option<String>,
    /// Captured by the mesh and reachable over HBONE (tunnel protocol HBONE).
    pub mesh: bool,
    /// The node agent's HBONE address that accepts tunnels to this workload.
    pub gateway: Option<SocketAddr>,
    /// `<namespace>/<name>` of the authorization policies selecting it.
    pub authorization_policies: Vec<String>,
    /// Ports the kubelet's probes connect to (this mesh's `probe_ports`
    /// extension of the Workload resource; empty from istiod). 0 and values
    /// beyond 65535 are no ports and are dropped.
    pub probe_ports: Vec<u16>,
}

impl Workload {
    /// Decodes an xDS workload; `uid` falls back to the resource name.
    pub fn from_proto(resource_name: &str, w: &WorkloadProto) -> Self {
        let uid = if w.uid.is_empty() {
            resource_name.to_string()
        } else {
            w.uid.clone()
        };
        Workload {
            uid,
            name: w.name.clone(),
            namespace: w.namespace.clone(),
            service_account: w.service_account.clone(),
            trust_domain: w.trust_domain.clone(),
            workload_name: w.workload_name.clone(),
            canonical_name: w.canonical_name.clone(),
            canonical_revision: w.canonical_revision.clone(),
            node: w.node.clone(),
            cluster_id: w.cluster_id.clone(),
            ips: w
                .addresses
                .iter()
                .filter_map(|a| ip_from_bytes(a))
                .collect(),
            hostname: Some(w.hostname.clone()).filter(|h| !h.is_empty()),
            mesh: w.tunnel_protocol == TunnelProtocol::Hbone as i32,
            gateway: w
                .network_gateway
                .as_ref()
                .and_then(gateway_ip_port)
                .map(|(ip, port)| SocketAddr::new(ip, port.unwrap_or(DEFAULT_HBONE_PORT))),
            authorization_policies: w.authorization_policies.clone(),
            probe_ports: w
                .probe_ports
                .iter()
                .filter_map(|p| u16::try_from(*p).ok().filter(|p| *p != 0))
                .collect(),
        }
    }

    /// The owner name when known, else the pod name (Istio's `workload`).
    pub fn workload_label(&self) -> &str {
        if self.workload_name.is_empty() {
            &self.name
        } else {
            &self.workload_name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::istio_workload::NetworkAddress;

    fn gateway(address: Vec<u8>, port: u32) -> GatewayAddress {
        GatewayAddress {
            destination: Some(Destination::Address(NetworkAddress {
                network: String::new(),
                address,
                length: None,
            })),
            hbone_mtls_port: port,
        }
    }

    #[test]
    fn addresses_are_four_or_sixteen_bytes() {
        assert_eq!(ip_from_bytes(&[10, 0, 0, 1]), Some([10, 0, 0, 1].into()));
        assert_eq!(ip_from_bytes(&[0; 16]), Some([0u8; 16].into()));
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn workload_resource_probe_ports_reach_the_model() {
        let resource = WorkloadProto {
            uid: "Kubernetes//Pod/default/a".into(),
            namespace: "default".into(),
            trust_domain: "cluster.local".into(),
            service_account: "a".into(),
            probe_ports: vec![8080, 0, 70_000, 9090],
            ..Default::default()
        };
        let w = Workload::from_proto("a", &resource);
        assert_eq!(w.probe_ports, vec![8080, 9090], "0 and >65535 are no ports");
        assert_eq!(w.uid, "Kubernetes//Pod/default/a");
        assert_eq!(w.workload_label(), "", "no owner, no pod name");
    }

    #[test]
    fn a_dns_endpoint_keeps_its_hostname_and_has_no_addresses() {
        let resource = WorkloadProto {
            uid: "ServiceEntry/default/googleapis/www.googleapis.com".into(),
            namespace: "default".into(),
            hostname: "www.googleapis.com".into(),
            ..Default::default()
        };
        let w = Workload::from_proto("x", &resource);
        assert_eq!(w.hostname.as_deref(), Some("www.googleapis.com"));
        assert!(w.ips.is_empty());
        assert!(!w.mesh, "tunnel protocol NONE");
    }

    #[test]
    fn gateway_port_defaults_to_hbones_and_uid_to_the_resource_name() {
        let resource = WorkloadProto {
            name: "a-pod".into(),
            addresses: vec![vec![10, 244, 1, 3], vec![1, 2, 3]],
            tunnel_protocol: TunnelProtocol::Hbone as i32,
            network_gateway: Some(gateway(vec![172, 18, 0, 3], 0)),
            ..Default::default()
        };
        let w = Workload::from_proto("uid-from-name", &resource);
        assert_eq!(w.uid, "uid-from-name");
        assert_eq!(w.ips, vec![IpAddr::from([10, 244, 1, 3])]);
        assert!(w.mesh);
        assert_eq!(w.gateway, Some("172.18.0.3:15008".parse().unwrap()));
        assert_eq!(w.workload_label(), "a-pod");
        assert_eq!(w.hostname, None, "no hostname on the wire");
        assert_eq!(
            gateway_ip_port(&gateway(vec![10, 0, 0, 1], 15009)),
            Some(([10, 0, 0, 1].into(), Some(15009)))
        );
    }
}
