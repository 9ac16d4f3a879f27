//! Services without a selector take their endpoints from EndpointSlices
//! (`discovery.k8s.io/v1`, labelled `kubernetes.io/service-name`): each
//! endpoint whose `targetRef` is a Pod we know makes that pod serve the
//! Service, on the slice port named like the Service port. Slices of
//! Services with a selector are Kubernetes' own copy of what the selector
//! already gave us, so they are not read twice. Endpoints without a Pod
//! `targetRef` (external IPs) are not modelled.
use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{objects::ServiceObj, RawResource};
use crate::model::MeshState;

/// The label naming a slice's Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Adds selector-less Services to the workloads their slices name.
/// `services` are (state key, object) of the accepted Services.
pub(super) fn attach(
    raw: &[RawResource],
    services: &[(String, &ServiceObj)],
    state: &mut MeshState,
) {
    for slice in raw
        .iter()
        .filter(|r| r.kind == "EndpointSlice" && r.api_version.starts_with("discovery.k8s.io/"))
    {
        let value = &slice.value;
        let Some(service) = value["metadata"]["labels"][SERVICE_NAME_LABEL].as_str() else {
            continue;
        };
        let Some((key, svc)) = services
            .iter()
            .find(|(_, s)| s.namespace == slice.namespace && s.name == service)
        else {
            continue;
        };
        if !svc.selector.is_empty() {
            continue;
        }
        let ports = port_map(svc, &value["ports"]);
        for endpoint in value["endpoints"].as_sequence().into_iter().flatten() {
            let target = &endpoint["targetRef"];
            if target["kind"].as_str() != Some("Pod") {
                continue;
            }
            let Some(name) = target["name"].as_str() else {
                continue;
            };
            let namespace = target["namespace"].as_str().unwrap_or(&slice.namespace);
            let uid = format!("Kubernetes//Pod/{namespace}/{name}");
            if let Some(workload) = state.workloads.get_mut(&uid) {
                workload
                    .services
                    .entry(key.clone())
                    .or_default()
                    .extend(ports.iter().map(|(k, v)| (*k, *v)));
            }
        }
    }
}

/// Service port → the slice's port of the same name (TCP only).
fn port_map(svc: &ServiceObj, slice_ports: &Value) -> BTreeMap<u16, u16> {
    let slice_ports: Vec<(Option<&str>, u16)> = slice_ports
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|p| p["protocol"].as_str().unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p["port"].as_u64()?).ok()?;
            Some((p["name"].as_str().filter(|n| !n.is_empty()), port))
        })
        .collect();
    svc.ports
        .iter()
        .filter(|p| p.tcp)
        .filter_map(|p| {
            let name = p.name.as_deref().filter(|n| !n.is_empty());
            let (_, target) = slice_ports.iter().find(|(n, _)| *n == name)?;
            Some((p.port, *target))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::source::{load_files, test_yaml::AMBIENT_NODE, SourceConfig};

    const OBJECTS: &str = "---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: default, labels: {app: db}}
spec: {nodeName: node-1, serviceAccountName: db}
status: {podIP: 10.244.1.5}
---
apiVersion: v1
kind: Service
metadata: {name: legacy-db, namespace: default}
spec:
  clusterIP: 10.96.0.50
  ports: [{name: sql, port: 5432}, {name: admin, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: legacy-db-abc, namespace: default, labels: {kubernetes.io/service-name: legacy-db}}
addressType: IPv4
ports: [{name: sql, port: 15432, protocol: TCP}, {name: admin, port: 9090}]
endpoints:
- addresses: [10.244.1.5]
  targetRef: {kind: Pod, name: db-0, namespace: default}
- addresses: [192.0.2.7]
";

    fn yaml() -> String {
        format!("{AMBIENT_NODE}{OBJECTS}")
    }

    #[test]
    fn selectorless_service_takes_pods_from_its_slices() {
        let snapshot = load_files(&[("a.yaml".into(), yaml())], &SourceConfig::default())
            .unwrap_or_else(|p| panic!("{p:?}"));
        let db = &snapshot.state.workloads["Kubernetes//Pod/default/db-0"];
        let ports = &db.services["default/legacy-db.default.svc.cluster.local"];
        assert_eq!(ports.get(&5432), Some(&15432));
        assert_eq!(ports.get(&8080), Some(&9090));
        assert!(snapshot.raw.iter().any(|r| r.kind == "EndpointSlice"));
    }

    #[test]
    fn slices_of_services_with_a_selector_are_not_read_twice() {
        let yaml = yaml().replace(
            "  clusterIP: 10.96.0.50\n",
            "  clusterIP: 10.96.0.50\n  selector: {app: other}\n",
        );
        let snapshot = load_files(&[("a.yaml".into(), yaml)], &SourceConfig::default()).unwrap();
        let db = &snapshot.state.workloads["Kubernetes//Pod/default/db-0"];
        assert!(db.services.is_empty(), "{:?}", db.services);
    }
}
