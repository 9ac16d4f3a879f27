//! Which pod owns an address: finished pods leave the workload view, and
//! two live pods claiming one IP resolve by a fixed rule with a warning
//! instead of rejecting the newcomer.
use crate::source::{load_files, Snapshot, SourceConfig};

use crate::source::test_yaml::AMBIENT_NODE;

const SERVICE: &str = "---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.10, selector: {app: web}, ports: [{port: 80}]}
";

fn pod(name: &str, phase: &str, created: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, \
         creationTimestamp: \"{created}\", labels: {{app: web}}}}\n\
         spec: {{nodeName: node-1, serviceAccountName: {name}}}\n\
         status: {{phase: {phase}, podIP: 10.244.1.5}}\n"
    )
}

fn load(pods: &[String]) -> Snapshot {
    let yaml = format!("{AMBIENT_NODE}{SERVICE}{}", pods.concat());
    load_files(&[("a.yaml".into(), yaml)], &SourceConfig::default())
        .unwrap_or_else(|p| panic!("{p:?}"))
}

fn owner(snapshot: &Snapshot) -> Vec<&str> {
    let ip = "10.244.1.5".parse().unwrap();
    snapshot
        .state
        .workloads
        .values()
        .filter(|w| w.ips.contains(&ip))
        .map(|w| w.name.as_str())
        .collect()
}

#[test]
fn finished_pods_leave_the_workload_view() {
    for phase in ["Succeeded", "Failed"] {
        let snapshot = load(&[
            pod("job-0", phase, "2024-01-01T00:00:00Z"),
            pod("web-0", "Running", "2024-01-02T00:00:00Z"),
        ]);
        assert!(
            !snapshot
                .state
                .workloads
                .contains_key("Kubernetes//Pod/default/job-0"),
            "{phase}"
        );
        assert_eq!(owner(&snapshot), ["web-0"], "{phase}");
        let web = &snapshot.state.workloads["Kubernetes//Pod/default/web-0"];
        assert!(web.mesh);
    }
}

#[test]
fn a_live_pod_is_never_demoted_by_a_stale_one() {
    // Newest creationTimestamp wins among Running pods, whatever the order.
    for pods in [
        [
            pod("old", "Running", "2024-01-01T00:00:00Z"),
            pod("new", "Running", "2024-06-01T00:00:00Z"),
        ],
        [
            pod("new", "Running", "2024-06-01T00:00:00Z"),
            pod("old", "Running", "2024-01-01T00:00:00Z"),
        ],
    ] {
        let snapshot = load(&pods);
        assert_eq!(owner(&snapshot), ["new"]);
        assert!(
            snapshot.warnings.iter().any(|w| w.contains("default/old")
                && w.contains("default/new")
                && w.contains("10.244.1.5")),
            "{:?}",
            snapshot.warnings
        );
    }
    // Running beats Pending, even a newer Pending.
    let snapshot = load(&[
        pod("running", "Running", "2024-01-01T00:00:00Z"),
        pod("pending", "Pending", "2024-06-01T00:00:00Z"),
    ]);
    assert_eq!(owner(&snapshot), ["running"]);
}
