//! Which identities an authenticated caller may obtain a certificate for:
//! its own (`spiffe://<td>/ns/<ns>/sa/<sa>` of its token), or, for a
//! trusted node account (`--ca-trusted-node-accounts`: our agent's, Istio's
//! ztunnel's), that of any pod scheduled on the caller's own node — the
//! agent holds certificates for the pods it captures, and a compromised
//! agent must not reach identities of other nodes' pods.
//!
//! One rule whether the request names the identity in its CSR alone (our
//! agent before it impersonated) or also as Istio's `ImpersonatedIdentity`
//! metadata (ztunnel, our agent now): istiod's CA_TRUSTED_NODE_ACCOUNTS
//! semantics, with the pod's node taken from the control plane's model.
use super::{AuthPolicy, Caller};
use crate::model::{Identity, MeshState};

/// `Ok` when `caller` may have a certificate for `requested`; otherwise a
/// message naming the requested and the proven identity (for
/// PERMISSION_DENIED).
pub fn authorize_certificate(
    policy: &AuthPolicy,
    caller: &Caller,
    requested: &Identity,
    state: &MeshState,
) -> Result<(), String> {
    let proven = Identity {
        trust_domain: policy.trust_domain.clone(),
        namespace: caller.namespace.clone(),
        service_account: caller.service_account.clone(),
    };
    if *requested == proven {
        return Ok(());
    }
    let refused =
        format!("a certificate for {requested} was refused: the caller's token proves {proven}");
    let is_agent = policy
        .node_agents
        .iter()
        .any(|(ns, sa)| *ns == caller.namespace && *sa == caller.service_account);
    if !is_agent {
        return Err(format!(
            "{refused}, which is not a trusted node account (--ca-trusted-node-accounts)"
        ));
    }
    if requested.trust_domain != policy.trust_domain {
        return Err(refused);
    }
    let node = match (&caller.node_name, &caller.pod_name) {
        (Some(node), _) if !node.is_empty() => node.clone(),
        (_, Some(pod)) => match state
            .workloads
            .values()
            .find(|w| w.namespace == caller.namespace && w.name == *pod)
        {
            Some(w) if !w.node.is_empty() => w.node.clone(),
            _ => {
                return Err(format!(
                    "{refused}, a node agent whose pod {}/{pod} is not scheduled on a known node",
                    caller.namespace
                ))
            }
        },
        _ => {
            return Err(format!(
                "{refused}, a node agent, but its token is bound to no pod or node"
            ))
        }
    };
    let on_node = state.workloads.values().any(|w| {
        w.node == node
            && w.namespace == requested.namespace
            && w.service_account == requested.service_account
    });
    if on_node {
        Ok(())
    } else {
        Err(format!(
            "{refused}, the node agent of node {node}, which runs no pod of service account {}/{}",
            requested.namespace, requested.service_account
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        authn::{AuthError, Authenticator},
        model::Workload,
    };

    struct Never;

    #[tonic::async_trait]
    impl Authenticator for Never {
        async fn authenticate(&self, _: &str) -> Result<Caller, AuthError> {
            Err(AuthError::Rejected("never".into()))
        }
    }

    fn policy() -> AuthPolicy {
        AuthPolicy {
            authenticator: Arc::new(Never),
            node_agents: vec![("istio-system".into(), "mesh-agent".into())],
            trust_domain: "cluster.local".into(),
        }
    }

    fn id(ns: &str, sa: &str) -> Identity {
        Identity {
            trust_domain: "cluster.local".into(),
            namespace: ns.into(),
            service_account: sa.into(),
        }
    }

    fn caller(ns: &str, sa: &str, pod: Option<&str>, node: Option<&str>) -> Caller {
        Caller {
            namespace: ns.into(),
            service_account: sa.into(),
            pod_name: pod.map(Into::into),
            node_name: node.map(Into::into),
        }
    }

    fn state() -> MeshState {
        let mut state = MeshState::default();
        for (ns, name, sa, node) in [
            ("default", "web-1", "web", "node-a"),
            ("default", "db-1", "db", "node-b"),
            ("istio-system", "mesh-agent-a", "mesh-agent", "node-a"),
        ] {
            let uid = format!("Kubernetes//Pod/{ns}/{name}");
            state.workloads.insert(
                uid.clone(),
                Workload {
                    uid,
                    name: name.into(),
                    namespace: ns.into(),
                    service_account: sa.into(),
                    ips: vec![],
                    node: node.into(),
                    labels: Default::default(),
                    mesh: true,
                    services: Default::default(),
                    probe_ports: vec![],
                },
            );
        }
        state
    }

    #[test]
    fn own_identity_only_for_workloads() {
        let (p, s) = (policy(), state());
        let web = caller("default", "web", Some("web-1"), Some("node-a"));
        assert_eq!(
            authorize_certificate(&p, &web, &id("default", "web"), &s),
            Ok(())
        );
        let err = authorize_certificate(&p, &web, &id("default", "db"), &s).unwrap_err();
        assert!(
            err.contains("spiffe://cluster.local/ns/default/sa/db"),
            "{err}"
        );
        assert!(
            err.contains("proves spiffe://cluster.local/ns/default/sa/web"),
            "{err}"
        );
        let mut other_td = id("default", "web");
        other_td.trust_domain = "evil.example".into();
        assert!(authorize_certificate(&p, &web, &other_td, &s).is_err());
    }

    #[test]
    fn node_agents_get_pods_of_their_own_node_only() {
        let (p, s) = (policy(), state());
        // Node from the token.
        let agent_a = caller("istio-system", "mesh-agent", None, Some("node-a"));
        assert_eq!(
            authorize_certificate(&p, &agent_a, &id("default", "web"), &s),
            Ok(())
        );
        let err = authorize_certificate(&p, &agent_a, &id("default", "db"), &s).unwrap_err();
        assert!(err.contains("node node-a"), "{err}");
        // Node from the pod the token is bound to.
        let by_pod = caller("istio-system", "mesh-agent", Some("mesh-agent-a"), None);
        assert_eq!(
            authorize_certificate(&p, &by_pod, &id("default", "web"), &s),
            Ok(())
        );
        assert!(authorize_certificate(&p, &by_pod, &id("default", "db"), &s).is_err());
        // Neither: refused.
        let unbound = caller("istio-system", "mesh-agent", None, None);
        assert!(authorize_certificate(&p, &unbound, &id("default", "web"), &s).is_err());
        let unknown_pod = caller("istio-system", "mesh-agent", Some("gone"), None);
        assert!(authorize_certificate(&p, &unknown_pod, &id("default", "web"), &s).is_err());
        // Not a node agent account: no delegation even on the same node.
        let web = caller("default", "web", Some("web-1"), Some("node-b"));
        let err = authorize_certificate(&p, &web, &id("default", "db"), &s).unwrap_err();
        assert!(err.contains("not a trusted node account"), "{err}");
    }

    #[test]
    fn every_trusted_node_account_gets_the_same_rule() {
        let mut p = policy();
        p.node_agents
            .push(("istio-system".into(), "ztunnel".into()));
        let s = state();
        let ztunnel = caller("istio-system", "ztunnel", None, Some("node-a"));
        assert_eq!(
            authorize_certificate(&p, &ztunnel, &id("default", "web"), &s),
            Ok(())
        );
        let err = authorize_certificate(&p, &ztunnel, &id("default", "db"), &s).unwrap_err();
        assert!(err.contains("node node-a"), "{err}");
        // Untrusted: the same account name in another namespace.
        let other = caller("default", "ztunnel", None, Some("node-a"));
        assert!(authorize_certificate(&p, &other, &id("default", "web"), &s).is_err());
    }
}
