//! Views for unit tests: a small two-node mesh.
use std::sync::Arc;

use mesh_xds::workload::Workload;

use super::view::{
    EndpointAddress, ExportTo, ExternalEndpoint, MeshView, ServiceInfo, ServiceName, WorkloadInfo,
};

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
            hostname: None,
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
        waypoint: None,
        details: Default::default(),
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
            name: Arc::new(ServiceName::new(
                "svc.default.svc.cluster.local",
                "svc",
                "default",
            )),
            vip: "10.96.0.10:80".parse().unwrap(),
            endpoints: vec![
                ("Kubernetes//Pod/default/b".into(), 8080),
                ("Kubernetes//Pod/default/c".into(), 8080),
            ],
            waypoint: None,
            export_to: ExportTo::All,
            passthrough: false,
            app_protocol: 0,
            details: Default::default(),
        }],
    )
}

/// A ServiceEntry host `host` of namespace `default` on `vip`.
pub(crate) fn entry(host: &str, vip: &str, endpoints: Vec<(String, u16)>) -> ServiceInfo {
    ServiceInfo {
        key: format!("default/{host}"),
        name: Arc::new(ServiceName::new(host, "entry", "default")),
        vip: vip.parse().unwrap(),
        endpoints,
        waypoint: None,
        export_to: ExportTo::All,
        passthrough: false,
        app_protocol: 0,
        details: Default::default(),
    }
}

/// [`view`] plus pod `o` (namespace `other`, n1, 10.244.1.9) and
/// ServiceEntry hosts of namespace `default`:
/// - `www.googleapis.com` 240.240.0.1:80, exported to `default` only,
///   resolved by name (endpoint `www.googleapis.com:80`);
/// - `api.static.test` 240.240.0.2:80, endpoint 192.0.2.10:8080 (STATIC);
/// - `db.example.com` 240.240.0.3:5432, `resolution: NONE`;
/// - `*.wild.test` 240.240.0.4:443, `resolution: NONE`;
/// - `hidden.test` 240.240.0.6:80, `exportTo: ["~"]`.
pub(crate) fn entries_view() -> MeshView {
    let base = view();
    let mut workloads: Vec<WorkloadInfo> = base.workloads().cloned().collect();
    let mut other = workload("o", "10.244.1.9", "n1", true);
    other.workload.namespace = "other".into();
    workloads.push(other);
    let mut services: Vec<ServiceInfo> = base.services().cloned().collect();
    let mut google = entry(
        "www.googleapis.com",
        "240.240.0.1:80",
        vec![(GOOGLE_UID.into(), 80)],
    );
    google.export_to = ExportTo::Namespaces(vec!["default".into()]);
    services.push(google);
    services.push(entry(
        "api.static.test",
        "240.240.0.2:80",
        vec![(STATIC_UID.into(), 8080)],
    ));
    let mut db = entry("db.example.com", "240.240.0.3:5432", vec![]);
    db.passthrough = true;
    services.push(db);
    let mut wild = entry("*.wild.test", "240.240.0.4:443", vec![]);
    wild.passthrough = true;
    services.push(wild);
    let mut hidden = entry("hidden.test", "240.240.0.6:80", vec![]);
    hidden.export_to = ExportTo::Namespaces(vec![]);
    hidden.passthrough = true;
    services.push(hidden);
    MeshView::new("n1", workloads, services).with_external(vec![
        ExternalEndpoint {
            uid: GOOGLE_UID.into(),
            namespace: "default".into(),
            address: EndpointAddress::Hostname("www.googleapis.com".into()),
        },
        ExternalEndpoint {
            uid: STATIC_UID.into(),
            namespace: "default".into(),
            address: EndpointAddress::Ips(vec!["192.0.2.10".parse().unwrap()]),
        },
    ])
}

pub(crate) const GOOGLE_UID: &str = "ServiceEntry/default/googleapis/www.googleapis.com";
pub(crate) const STATIC_UID: &str = "ServiceEntry/default/static/192.0.2.10";
