//! Views for unit tests: a small two-node mesh.
use std::sync::Arc;

use mesh_xds::workload::Workload;

use super::view::{MeshView, ServiceInfo, ServiceName, WorkloadInfo};

/// A workload `name` with pod `<name>-pod`, app `name`, version `v1`.
pub(crate) fn workload(name: &str, ip: &str, node: &str, mesh: bool) -> WorkloadInfo {
    WorkloadInfo {
        workload: Workload {
            uid: format!("Kubernetes//Pod/default/{name}"),
            name: format!("{name}-pod"),
            namespace: "default".into(),
            service_account: name.into(),
            workload_name: name.into(),
            canonical_name: name.into(),
            canonical_revision: "v1".into(),
            trust_domain: "cluster.local".into(),
            cluster_id: "Kubernetes".into(),
            authorization_policies: vec![],
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
        },
        identity: format!("spiffe://cluster.local/ns/default/sa/{name}")
            .parse()
            .unwrap(),
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
