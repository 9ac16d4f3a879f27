//! The waypoint's view of Istio's Address xDS: workloads by IP and by uid,
//! services by VIP. The upstream side uses it to decide how to reach an
//! endpoint (HBONE through the node agent of a mesh workload, or plain
//! TCP); telemetry uses it to name both ends of a request.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    ops::Deref,
    sync::Arc,
};

use mesh_hbone::Identity;

use super::cluster::ServiceLabel;
use mesh_xds::{
    proto::istio_workload,
    workload::{gateway_ip_port, ip_from_bytes, Workload, DEFAULT_HBONE_PORT},
    XdsSnapshot,
};

/// One workload (pod) as published in the Address xDS (the model shared
/// with the node agent), with the SPIFFE identity its fields form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEntry {
    pub workload: Workload,
    /// `spiffe://<td>/ns/<ns>/sa/<sa>`; None when the fields do not form one.
    pub identity: Option<Identity>,
}

impl Deref for WorkloadEntry {
    type Target = Workload;

    fn deref(&self) -> &Workload {
        &self.workload
    }
}

impl WorkloadEntry {
    /// Where to open an HBONE tunnel to this workload's address `ip`, and
    /// whom to expect there: only mesh workloads with an identity. As in
    /// Istio, the pod's own listener (`<ip>:15008`), unless the workload
    /// carries a `network_gateway` (it is on another network).
    pub fn hbone_target_at(&self, ip: IpAddr) -> Option<(SocketAddr, Identity)> {
        if !self.mesh {
            return None;
        }
        let identity = self.identity.clone()?;
        let gateway = self
            .gateway
            .unwrap_or_else(|| SocketAddr::new(ip, mesh_hbone::HBONE_PORT));
        Some((gateway, identity))
    }

    /// [`Self::hbone_target_at`] the workload's first address (IPv4 first).
    pub fn hbone_target(&self) -> Option<(SocketAddr, Identity)> {
        let ip = self
            .ips
            .iter()
            .find(|ip| ip.is_ipv4())
            .or(self.ips.first())?;
        self.hbone_target_at(*ip)
    }

    /// Converts an xDS workload; `uid` falls back to the resource name.
    pub fn from_proto(resource_name: &str, w: &istio_workload::Workload) -> Self {
        let workload = Workload::from_proto(resource_name, w);
        let identity = Identity::new(
            &workload.trust_domain,
            &workload.namespace,
            &workload.service_account,
        )
        .ok();
        WorkloadEntry { workload, identity }
    }
}

/// One Kubernetes Service as published in the Address xDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub name: String,
    pub namespace: String,
    /// FQDN, `reviews.default.svc.cluster.local`.
    pub hostname: String,
    pub vips: Vec<IpAddr>,
    /// The waypoint the service is bound to, if any.
    pub waypoint: Option<SocketAddr>,
}

/// Workloads and services, indexed; immutable once built.
#[derive(Debug, Default)]
pub struct Directory {
    by_uid: HashMap<String, Arc<WorkloadEntry>>,
    by_ip: HashMap<IpAddr, Arc<WorkloadEntry>>,
    by_vip: HashMap<IpAddr, Arc<ServiceEntry>>,
    by_hostname: HashMap<String, Arc<ServiceEntry>>,
    /// Host → the service the clusters' metadata names (Istio's
    /// `filter_metadata["istio"]["services"]`): what telemetry labels
    /// a request's destination service with.
    cluster_services: HashMap<String, Arc<ServiceLabel>>,
}

/// A service's waypoint address; the HBONE port defaults to Istio's.
fn waypoint_addr(gw: Option<&istio_workload::GatewayAddress>) -> Option<SocketAddr> {
    let (ip, port) = gateway_ip_port(gw?)?;
    Some(SocketAddr::new(ip, port.unwrap_or(DEFAULT_HBONE_PORT)))
}

impl ServiceEntry {
    pub fn from_proto(s: &istio_workload::Service) -> Self {
        ServiceEntry {
            name: s.name.clone(),
            namespace: s.namespace.clone(),
            hostname: s.hostname.clone(),
            vips: s
                .addresses
                .iter()
                .filter_map(|a| ip_from_bytes(&a.address))
                .collect(),
            waypoint: waypoint_addr(s.waypoint.as_ref()),
        }
    }
}

impl Directory {
    /// The Address view of an xDS snapshot.
    pub fn from_snapshot(snapshot: &XdsSnapshot) -> Self {
        Self::build(
            snapshot
                .workloads()
                .map(|(n, w)| WorkloadEntry::from_proto(n, w)),
            snapshot
                .services()
                .map(|(_, s)| ServiceEntry::from_proto(s)),
        )
    }

    /// Indexes these workloads and services. When two workloads claim an
    /// IP, the one with the smaller uid wins (deterministic across updates).
    pub fn build(
        workloads: impl IntoIterator<Item = WorkloadEntry>,
        services: impl IntoIterator<Item = ServiceEntry>,
    ) -> Self {
        let mut d = Directory::default();
        let mut workloads: Vec<_> = workloads.into_iter().map(Arc::new).collect();
        workloads.sort_by(|a, b| b.uid.cmp(&a.uid));
        for w in workloads {
            for ip in &w.ips {
                d.by_ip.insert(*ip, Arc::clone(&w));
            }
            d.by_uid.insert(w.uid.clone(), w);
        }
        for s in services.into_iter().map(Arc::new) {
            for vip in &s.vips {
                d.by_vip.insert(*vip, Arc::clone(&s));
            }
            d.by_hostname.insert(s.hostname.clone(), s);
        }
        d
    }

    pub fn workload_by_ip(&self, ip: IpAddr) -> Option<&Arc<WorkloadEntry>> {
        self.by_ip.get(&ip)
    }

    pub fn workload_by_uid(&self, uid: &str) -> Option<&Arc<WorkloadEntry>> {
        self.by_uid.get(uid)
    }

    pub fn service_by_vip(&self, ip: IpAddr) -> Option<&Arc<ServiceEntry>> {
        self.by_vip.get(&ip)
    }

    pub fn service_by_hostname(&self, hostname: &str) -> Option<&Arc<ServiceEntry>> {
        self.by_hostname.get(hostname)
    }

    /// The workload an endpoint belongs to: by the EDS metadata uid when the
    /// Address xDS knows it, else by the endpoint's IP.
    pub fn endpoint_workload(&self, uid: Option<&str>, ip: IpAddr) -> Option<&Arc<WorkloadEntry>> {
        uid.and_then(|u| self.workload_by_uid(u))
            .or_else(|| self.workload_by_ip(ip))
    }

    /// Adds the services clusters stand for (their metadata).
    pub fn with_cluster_services(
        mut self,
        services: impl IntoIterator<Item = ServiceLabel>,
    ) -> Self {
        for s in services {
            self.cluster_services.insert(s.host.clone(), Arc::new(s));
        }
        self
    }

    /// The service a cluster's metadata names for `host`.
    pub fn cluster_service(&self, host: &str) -> Option<&Arc<ServiceLabel>> {
        self.cluster_services.get(host)
    }

    pub fn workloads(&self) -> usize {
        self.by_uid.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use istio_workload::{gateway_address::Destination, GatewayAddress, NetworkAddress};

    pub fn workload(
        uid: &str,
        ip: [u8; 4],
        mesh: bool,
        node_ip: Option<[u8; 4]>,
    ) -> istio_workload::Workload {
        istio_workload::Workload {
            uid: uid.into(),
            name: format!("{uid}-pod"),
            namespace: "default".into(),
            addresses: vec![ip.to_vec()],
            trust_domain: "cluster.local".into(),
            service_account: "reviews".into(),
            canonical_name: "reviews".into(),
            canonical_revision: "v1".into(),
            workload_name: "reviews-v1".into(),
            node: "node-b".into(),
            tunnel_protocol: if mesh {
                istio_workload::TunnelProtocol::Hbone as i32
            } else {
                istio_workload::TunnelProtocol::None as i32
            },
            network_gateway: node_ip.map(|n| GatewayAddress {
                destination: Some(Destination::Address(NetworkAddress {
                    network: String::new(),
                    address: n.to_vec(),
                    ..Default::default()
                })),
                hbone_mtls_port: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn mesh_workload_is_reached_at_its_own_listener_or_its_network_gateway() {
        let w = WorkloadEntry::from_proto("r", &workload("uid-1", [10, 244, 1, 3], true, None));
        let (gw, id) = w.hbone_target().expect("hbone target");
        assert_eq!(gw, "10.244.1.3:15008".parse().unwrap());
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/reviews"
        );
        assert_eq!(w.workload_label(), "reviews-v1");
        // On another network: its network gateway.
        let remote = WorkloadEntry::from_proto(
            "r",
            &workload("uid-2", [10, 244, 1, 4], true, Some([172, 18, 0, 3])),
        );
        let (gw, _) = remote.hbone_target().expect("hbone target");
        assert_eq!(gw, "172.18.0.3:15008".parse().unwrap());
    }

    #[test]
    fn non_mesh_workloads_are_plain() {
        let plain = WorkloadEntry::from_proto(
            "r",
            &workload("a", [10, 0, 0, 1], false, Some([1, 1, 1, 1])),
        );
        assert!(plain.hbone_target().is_none());
        let plain = WorkloadEntry::from_proto("r", &workload("b", [10, 0, 0, 2], false, None));
        assert!(plain.hbone_target().is_none());
    }

    #[test]
    fn lookups_by_ip_uid_and_vip() {
        let svc = istio_workload::Service {
            name: "reviews".into(),
            namespace: "default".into(),
            hostname: "reviews.default.svc.cluster.local".into(),
            addresses: vec![NetworkAddress {
                network: String::new(),
                address: vec![10, 96, 0, 20],
                ..Default::default()
            }],
            ..Default::default()
        };
        let d = Directory::build(
            [
                WorkloadEntry::from_proto("x", &workload("uid-1", [10, 244, 1, 3], true, None)),
                WorkloadEntry::from_proto("uid-2", &workload("", [10, 244, 1, 4], true, None)),
            ],
            [ServiceEntry::from_proto(&svc)],
        );
        let ip: IpAddr = "10.244.1.4".parse().unwrap();
        assert_eq!(d.workload_by_ip(ip).unwrap().uid, "uid-2");
        assert_eq!(
            d.workload_by_uid("uid-1").unwrap().ips,
            vec![IpAddr::from([10, 244, 1, 3])]
        );
        assert_eq!(
            d.service_by_vip("10.96.0.20".parse().unwrap())
                .unwrap()
                .name,
            "reviews"
        );
        // uid metadata wins over the IP.
        assert_eq!(d.endpoint_workload(Some("uid-1"), ip).unwrap().uid, "uid-1");
        assert_eq!(d.endpoint_workload(Some("gone"), ip).unwrap().uid, "uid-2");
        assert_eq!(d.workloads(), 2);
    }
}
