//! Whether a pod is captured, decided from the agent's xDS view: the
//! control plane already folds the namespace's `istio.io/dataplane-mode`
//! label, the pod's opt-out label, host networking and waypoint pods into
//! the workload's tunnel protocol (HBONE = mesh). Deciding from the same
//! view the data path routes by means capture and routing never disagree,
//! and the agent needs no Kubernetes access of its own.
use crate::state::view::MeshView;

/// Istio's workload uid of a pod.
pub fn pod_uid(namespace: &str, name: &str) -> String {
    format!("Kubernetes//Pod/{namespace}/{name}")
}

/// The decision for one pod, or `None` while the view does not know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub enroll: bool,
    pub reason: String,
}

pub fn decide(view: &MeshView, namespace: &str, name: &str) -> Option<Decision> {
    let w = view.workload(&pod_uid(namespace, name))?;
    Some(if w.mesh {
        Decision {
            enroll: true,
            reason: "workload uses HBONE (ambient namespace)".into(),
        }
    } else {
        Decision {
            enroll: false,
            reason: "workload is not in the mesh (namespace not ambient, pod opted out, host network or waypoint)".into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::view::WorkloadInfo;

    fn workload(ns: &str, name: &str, mesh: bool) -> WorkloadInfo {
        WorkloadInfo::new(mesh_xds::workload::Workload {
            uid: pod_uid(ns, name),
            name: name.into(),
            namespace: ns.into(),
            service_account: "default".into(),
            trust_domain: "cluster.local".into(),
            workload_name: name.into(),
            canonical_name: name.into(),
            canonical_revision: "latest".into(),
            node: "node-1".into(),
            cluster_id: String::new(),
            ips: vec![],
            hostname: None,
            mesh,
            gateway: None,
            authorization_policies: vec![],
            probe_ports: vec![],
        })
        .expect("a SPIFFE identity")
    }

    #[test]
    fn decision_follows_the_tunnel_protocol() {
        let view = MeshView::new(
            "node-1",
            vec![workload("amb", "a", true), workload("plain", "b", false)],
            vec![],
        );
        assert!(decide(&view, "amb", "a").unwrap().enroll);
        let no = decide(&view, "plain", "b").unwrap();
        assert!(
            !no.enroll && no.reason.contains("not in the mesh"),
            "{no:?}"
        );
        assert_eq!(decide(&view, "amb", "unknown"), None);
    }
}
