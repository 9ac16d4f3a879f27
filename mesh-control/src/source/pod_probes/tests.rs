use crate::{
    source::{load_files, Problem, Snapshot, SourceConfig},
    translate::workload::{workload_address, ConvertOptions},
};

use crate::source::test_yaml::AMBIENT_NODE;

const POD: &str = "---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
status: {podIP: 10.244.1.5}
";

const UID: &str = "Kubernetes//Pod/default/web";

fn load(spec: &str) -> Result<Snapshot, Vec<Problem>> {
    let yaml = format!("{AMBIENT_NODE}{POD}spec:\n  nodeName: node-1\n{spec}");
    load_files(&[("pods.yaml".into(), yaml)], &SourceConfig::default())
}

fn probe_ports(spec: &str) -> Vec<u16> {
    let snapshot = load(spec).unwrap_or_else(|p| panic!("{p:?}"));
    snapshot.state.workloads[UID].probe_ports.clone()
}

/// The fields named by the problems of a rejected load.
fn problem_fields(spec: &str) -> Vec<String> {
    let problems = load(spec).expect_err("must be rejected");
    for p in &problems {
        assert_eq!(p.resource, "Pod default/web", "{p}");
    }
    problems.into_iter().map(|p| p.field).collect()
}

#[test]
fn every_probe_kind_of_every_container_counts_and_names_resolve() {
    let spec = "
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}, {containerPort: 7000}]
    livenessProbe: {httpGet: {path: /healthz, port: http}}
    readinessProbe: {tcpSocket: {port: 9000}}
    startupProbe: {grpc: {port: 9090}}
  - name: worker
    ports: [{name: http, containerPort: 8081}]
    readinessProbe: {httpGet: {port: http}}
    livenessProbe: {exec: {command: [true]}}
  initContainers:
  - name: sidecar
    restartPolicy: Always
    ports: [{name: admin, containerPort: 15000}]
    startupProbe: {tcpSocket: {port: admin}}
    livenessProbe: {httpGet: {port: 9000}}
";
    assert_eq!(probe_ports(spec), vec![8080, 8081, 9000, 9090, 15000]);
}

#[test]
fn pods_without_port_probes_declare_none() {
    assert!(probe_ports("").is_empty());
    let exec_only = "
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}]
    livenessProbe: {exec: {command: [cat, /tmp/ok]}}
";
    assert!(probe_ports(exec_only).is_empty());
}

#[test]
fn an_unknown_port_name_is_a_warning_not_an_error() {
    let spec = "
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {port: metrics}}
    livenessProbe: {tcpSocket: {port: 8080}}
  - name: other
    ports: [{name: metrics, containerPort: 9100}]
";
    let snapshot = load(spec).unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(snapshot.state.workloads[UID].probe_ports, vec![8080]);
    let field = "spec.containers[0].readinessProbe.httpGet.port";
    assert!(
        snapshot.warnings.iter().any(|w| w.contains(field)),
        "{:?}",
        snapshot.warnings
    );
}

#[test]
fn wrong_types_are_problems_naming_the_field() {
    let spec = "
  containers:
  - name: app
    ports: [{name: http, containerPort: web}, {name: 7, containerPort: 1}]
    livenessProbe: {grpc: {port: grpc}}
    readinessProbe: {httpGet: {port: true}}
    startupProbe: {tcpSocket: {port: 70000}}
  - name: b
    readinessProbe: yes
    livenessProbe: {tcpSocket: 8080}
    startupProbe: {httpGet: {path: /}}
  initContainers: {name: c}
";
    let mut fields = problem_fields(spec);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "spec.containers[0].livenessProbe.grpc.port",
            "spec.containers[0].ports[0].containerPort",
            "spec.containers[0].ports[1].name",
            "spec.containers[0].readinessProbe.httpGet.port",
            "spec.containers[0].startupProbe.tcpSocket.port",
            "spec.containers[1].livenessProbe.tcpSocket",
            "spec.containers[1].readinessProbe",
            "spec.containers[1].startupProbe.httpGet.port",
            "spec.initContainers",
        ]
    );
}

#[test]
fn the_workload_resource_carries_the_probe_ports() {
    let spec = "
  containers:
  - name: app
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {port: http}}
    livenessProbe: {tcpSocket: {port: 8080}}
    startupProbe: {grpc: {port: 9090}}
";
    let snapshot = load(spec).unwrap_or_else(|p| panic!("{p:?}"));
    let w = &snapshot.state.workloads[UID];
    let resource = workload_address(&snapshot.state, w, &ConvertOptions::default());
    assert_eq!(resource.probe_ports, vec![8080, 9090]);
}
