use std::collections::BTreeMap;

use mesh_xds::proto::istio_workload::{address, Address, Service, TunnelProtocol, Workload};

use crate::{
    source::{load_files, SourceConfig},
    translate::workload::{addresses, ConvertOptions},
};

/// The Address resources of `yaml` by name.
fn converted(yaml: &str) -> BTreeMap<String, Address> {
    let snapshot = load_files(
        &[("se.yaml".to_string(), yaml.to_string())],
        &SourceConfig::default(),
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    addresses(&snapshot.state, &ConvertOptions::default())
        .into_iter()
        .collect()
}

fn workload<'a>(all: &'a BTreeMap<String, Address>, uid: &str) -> &'a Workload {
    match all.get(uid).and_then(|a| a.r#type.as_ref()) {
        Some(address::Type::Workload(w)) => w,
        other => panic!("{uid}: {other:?} in {:#?}", all.keys()),
    }
}

fn service<'a>(all: &'a BTreeMap<String, Address>, name: &str) -> &'a Service {
    match all.get(name).and_then(|a| a.r#type.as_ref()) {
        Some(address::Type::Service(s)) => s,
        other => panic!("{name}: {other:?} in {:#?}", all.keys()),
    }
}

fn ports(list: &mesh_xds::proto::istio_workload::PortList) -> Vec<(u32, u32)> {
    list.ports
        .iter()
        .map(|p| (p.service_port, p.target_port))
        .collect()
}

fn entry(name: &str, spec: &str) -> String {
    format!("---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}")
}

const UID: &str = "Kubernetes/networking.istio.io/ServiceEntry/shop";

#[test]
fn a_dns_entry_is_a_service_with_a_vip_and_a_hostname_workload() {
    let all = converted(&entry(
        "ext",
        "  hosts: [www.googleapis.com]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n  resolution: DNS\n  subjectAltNames: [googleapis.com]\n",
    ));
    let svc = service(&all, "shop/www.googleapis.com");
    assert_eq!((svc.name.as_str(), svc.namespace.as_str()), ("ext", "shop"));
    assert_eq!(svc.hostname, "www.googleapis.com");
    assert_eq!(svc.addresses.len(), 1);
    assert_eq!(svc.addresses[0].address[..2], [240, 240]);
    assert_eq!(svc.subject_alt_names, ["googleapis.com"]);
    assert!(svc.export_to.is_empty(), "no exportTo: every namespace");
    assert!(!svc.passthrough);
    assert!(svc.waypoint.is_none());
    let w = workload(&all, &format!("{UID}/ext/www.googleapis.com"));
    assert_eq!(w.hostname, "www.googleapis.com");
    assert!(w.addresses.is_empty());
    assert_eq!(w.tunnel_protocol, TunnelProtocol::None as i32);
    assert_eq!(
        (w.trust_domain.as_str(), w.service_account.as_str()),
        ("", "")
    );
    assert!(w.network_gateway.is_none());
    assert_eq!((w.name.as_str(), w.namespace.as_str()), ("ext", "shop"));
    assert_eq!(w.cluster_id, "Kubernetes");
    assert_eq!(ports(&w.services["shop/www.googleapis.com"]), [(443, 443)]);
    assert_eq!(w.services.len(), 1);
}

#[test]
fn static_endpoints_are_workloads_naming_every_host() {
    let all = converted(&entry(
        "db",
        "  hosts: [db.example.com, db-ro.example.com]
  addresses: [192.0.2.10]
  ports: [{number: 5432, name: pg, targetPort: 15432}, {number: 9000, name: admin}]
  resolution: STATIC
  endpoints:
  - {address: 203.0.113.5, ports: {pg: 6432}}
  - {address: 203.0.113.6}
",
    ));
    for host in ["db.example.com", "db-ro.example.com"] {
        let svc = service(&all, &format!("shop/{host}"));
        assert_eq!(svc.addresses[0].address, [192, 0, 2, 10]);
    }
    let first = workload(&all, &format!("{UID}/db/203.0.113.5"));
    assert_eq!(first.addresses, [vec![203, 0, 113, 5]]);
    assert!(first.hostname.is_empty());
    assert_eq!(first.tunnel_protocol, TunnelProtocol::None as i32);
    assert_eq!(first.services.len(), 2);
    // The endpoint's port wins over targetPort; an unnamed one keeps it.
    assert_eq!(
        ports(&first.services["shop/db.example.com"]),
        [(5432, 6432), (9000, 9000)]
    );
    let second = workload(&all, &format!("{UID}/db/203.0.113.6"));
    assert_eq!(
        ports(&second.services["shop/db-ro.example.com"]),
        [(5432, 15432), (9000, 9000)]
    );
}

#[test]
fn dns_endpoints_are_hostname_workloads() {
    let all = converted(&entry(
        "api",
        "  hosts: [api.internal]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n  endpoints: [{address: lb.example.com, ports: {http: 8080}}]\n",
    ));
    let w = workload(&all, &format!("{UID}/api/lb.example.com"));
    assert_eq!(w.hostname, "lb.example.com");
    assert!(w.addresses.is_empty());
    assert_eq!(ports(&w.services["shop/api.internal"]), [(80, 8080)]);
    assert!(
        !all.contains_key(&format!("{UID}/api/api.internal")),
        "not the host itself"
    );
}

#[test]
fn a_workload_selector_adds_the_service_to_its_pods() {
    let yaml = format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio.io/dataplane-mode: ambient}}}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-1}}
status: {{addresses: [{{type: InternalIP, address: 10.0.0.1}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: db-0, namespace: shop, labels: {{app: db}}}}
spec: {{nodeName: node-1}}
status: {{podIP: 10.244.0.7}}
{}",
        entry(
            "db",
            "  hosts: [db.internal]\n  location: MESH_INTERNAL\n  ports: [{number: 5432, name: pg}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: db}}\n"
        )
    );
    let all = converted(&yaml);
    let pod = workload(&all, "Kubernetes//Pod/shop/db-0");
    assert_eq!(pod.tunnel_protocol, TunnelProtocol::Hbone as i32);
    assert_eq!(ports(&pod.services["shop/db.internal"]), [(5432, 5432)]);
    let entry_workloads = all.keys().filter(|k| k.contains("/ServiceEntry/")).count();
    assert_eq!(entry_workloads, 0, "the pods are the endpoints");
    assert_eq!(service(&all, "shop/db.internal").addresses.len(), 1);
}

#[test]
fn export_to_is_resolved() {
    for (written, want) in [
        ("[\".\"]", vec!["shop"]),
        ("[\".\", web, api]", vec!["api", "shop", "web"]),
        ("[\"*\"]", vec![]),
        ("[]", vec![]),
        ("[\"~\"]", vec!["~"]),
    ] {
        let all = converted(&entry(
            "ext",
            &format!("  hosts: [a.example.com]\n  exportTo: {written}\n"),
        ));
        assert_eq!(
            service(&all, "shop/a.example.com").export_to,
            want,
            "{written}"
        );
    }
}

#[test]
fn resolution_none_is_passthrough_without_vip_or_workloads() {
    let all = converted(&entry(
        "any",
        "  hosts: [\"*.example.com\"]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n",
    ));
    let svc = service(&all, "shop/*.example.com");
    assert!(svc.passthrough);
    assert!(svc.addresses.is_empty());
    assert_eq!(all.len(), 1, "{:#?}", all.keys());
}
