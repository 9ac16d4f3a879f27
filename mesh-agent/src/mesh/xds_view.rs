//! Turning the xDS snapshot (Istio workload discovery) into the agent's
//! [`MeshView`], and picking out which local pods are under STRICT mTLS and
//! which of their ports the kubelet probes.
use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
};

use mesh_hbone::Identity;
use mesh_xds::{proto::istio_workload, XdsSnapshot};

use super::route::{MeshView, ServiceInfo, ServiceName, WorkloadInfo};

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn gateway(w: &istio_workload::Workload) -> Option<SocketAddr> {
    let gw = w.network_gateway.as_ref()?;
    let istio_workload::gateway_address::Destination::Address(addr) = gw.destination.as_ref()?
    else {
        return None;
    };
    let port = u16::try_from(gw.hbone_mtls_port)
        .ok()
        .filter(|p| *p != 0)
        .unwrap_or(15008);
    Some(SocketAddr::new(ip_from_bytes(&addr.address)?, port))
}

fn workload_info(w: &istio_workload::Workload) -> Option<WorkloadInfo> {
    let identity = Identity::new(&w.trust_domain, &w.namespace, &w.service_account).ok()?;
    Some(WorkloadInfo {
        uid: w.uid.clone(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        service_account: w.service_account.clone(),
        workload_name: w.workload_name.clone(),
        canonical_name: w.canonical_name.clone(),
        canonical_revision: w.canonical_revision.clone(),
        authorization_policies: w.authorization_policies.clone(),
        identity,
        node: w.node.clone(),
        ips: w
            .addresses
            .iter()
            .filter_map(|a| ip_from_bytes(a))
            .collect(),
        mesh: w.tunnel_protocol == istio_workload::TunnelProtocol::Hbone as i32,
        gateway: gateway(w),
        probe_ports: w
            .probe_ports
            .iter()
            .filter_map(|p| u16::try_from(*p).ok().filter(|p| *p != 0))
            .collect(),
    })
}

/// The routing view for the agent of `node`.
pub fn view(node: &str, snapshot: &XdsSnapshot) -> MeshView {
    let workloads: Vec<WorkloadInfo> = snapshot
        .workloads()
        .filter_map(|(_, w)| workload_info(w))
        .collect();
    let mut services = Vec::new();
    for (name, svc) in snapshot.services() {
        let key = format!("{}/{}", svc.namespace, svc.hostname);
        let service_name = std::sync::Arc::new(ServiceName {
            hostname: svc.hostname.clone(),
            name: svc.name.clone(),
            namespace: svc.namespace.clone(),
        });
        let waypoint = svc.waypoint.as_ref().and_then(waypoint_addr);
        for port in &svc.ports {
            let Ok(service_port) = u16::try_from(port.service_port) else {
                continue;
            };
            let endpoints: Vec<(String, u16)> = snapshot
                .workloads()
                .filter_map(|(_, w)| {
                    let list = w.services.get(&key)?;
                    let p = list
                        .ports
                        .iter()
                        .find(|p| p.service_port == port.service_port)?;
                    let target = if p.target_port == 0 {
                        p.service_port
                    } else {
                        p.target_port
                    };
                    Some((w.uid.clone(), u16::try_from(target).ok()?))
                })
                .collect();
            for vip in svc
                .addresses
                .iter()
                .filter_map(|a| ip_from_bytes(&a.address))
            {
                services.push(ServiceInfo {
                    key: name.to_string(),
                    name: std::sync::Arc::clone(&service_name),
                    vip: SocketAddr::new(vip, service_port),
                    endpoints: endpoints.clone(),
                    waypoint,
                });
            }
        }
    }
    let policies = crate::policy::PolicySet::new(snapshot.authorizations().map(|(_, p)| p.clone()));
    MeshView::new(node, workloads, services).with_policies(policies)
}

/// The HBONE address of a service's waypoint (an IP address; a hostname
/// waypoint is not supported and ignored).
fn waypoint_addr(gw: &mesh_xds::proto::istio_workload::GatewayAddress) -> Option<SocketAddr> {
    use mesh_xds::proto::istio_workload::gateway_address::Destination;
    let Some(Destination::Address(a)) = &gw.destination else {
        return None;
    };
    let port = u16::try_from(gw.hbone_mtls_port).ok().filter(|p| *p != 0)?;
    Some(SocketAddr::new(ip_from_bytes(&a.address)?, port))
}

/// Addresses of this node's mesh pods that no plaintext client may reach:
/// STRICT mTLS (istiod's converted DENY-without-principal policy) or any
/// policy set that admits no identity-less source (policy/kernel.rs).
pub fn plaintext_denied_ips(view: &MeshView) -> BTreeSet<IpAddr> {
    view.local_workloads()
        .filter(|w| crate::policy::kernel::plaintext_always_denied(&view.policies.applicable(w)))
        .flat_map(|w| w.ips.iter().copied())
        .collect()
}

/// The (address, port) pairs that take plaintext from the node address
/// although their pod is in `strict`: every port the kubelet probes
/// (`probe_ports` of the Workload resource) of every local workload with an
/// address in `strict`. Pods outside `strict` need no entry (the kernel
/// does not judge them), so the map stays as small as the STRICT set.
pub fn probe_ports(view: &MeshView, strict: &BTreeSet<IpAddr>) -> BTreeSet<(IpAddr, u16)> {
    view.local_workloads()
        .flat_map(|w| {
            w.ips
                .iter()
                .filter(|ip| strict.contains(ip))
                .flat_map(|ip| w.probe_ports.iter().map(move |port| (*ip, *port)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::route::tests::workload;

    #[test]
    fn workload_resource_probe_ports_reach_the_view() {
        let resource = istio_workload::Workload {
            uid: "Kubernetes//Pod/default/a".into(),
            namespace: "default".into(),
            trust_domain: "cluster.local".into(),
            service_account: "a".into(),
            probe_ports: vec![8080, 0, 70_000, 9090],
            ..Default::default()
        };
        let info = workload_info(&resource).unwrap();
        assert_eq!(
            info.probe_ports,
            vec![8080, 9090],
            "0 and >65535 are no ports"
        );
    }

    #[test]
    fn probe_ports_are_those_of_local_strict_pods() {
        let mut strict_local = workload("a", "10.244.1.2", "n1", true);
        strict_local.ips.push("fd00::2".parse().unwrap());
        strict_local.probe_ports = vec![8080, 9090];
        let mut permissive_local = workload("b", "10.244.1.3", "n1", true);
        permissive_local.probe_ports = vec![8080];
        let mut remote = workload("c", "10.244.2.2", "n2", true);
        remote.probe_ports = vec![8080];
        let view = MeshView::new("n1", vec![strict_local, permissive_local, remote], vec![]);
        let strict: BTreeSet<IpAddr> = ["10.244.1.2", "fd00::2", "10.244.2.2"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();

        let got = probe_ports(&view, &strict);
        let want: BTreeSet<(IpAddr, u16)> = [
            ("10.244.1.2", 8080),
            ("10.244.1.2", 9090),
            ("fd00::2", 8080),
            ("fd00::2", 9090),
        ]
        .iter()
        .map(|(ip, port)| (ip.parse().unwrap(), *port))
        .collect();
        assert_eq!(got, want);
    }
}
