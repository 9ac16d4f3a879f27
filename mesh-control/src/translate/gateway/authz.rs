//! The AuthorizationPolicies an ingress gateway pod enforces, as Istio
//! applies workload selectors: a policy in the pod's namespace whose
//! `selector` matches the pod's labels (no selector: every workload of
//! the namespace), or one in the root namespace (selector matched against
//! the pod; no selector: mesh-wide). Policies with `targetRefs` name
//! waypoints or Services, never an Istio `Gateway`'s pods, and are left
//! out. The rules are the waypoints' ([`waypoint::rbac::rules`]), on the
//! listener's RBAC filters ([`waypoint::rbac::enforcing_filters`]): the
//! client address of `ipBlocks` / `remoteIpBlocks` is the TCP peer.
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

use crate::{
    model::{AuthorizationPolicy, Workload},
    translate::waypoint::{self, Cx},
};

/// Indices (in [`crate::model::MeshState::authorization_policies`]) of
/// the policies applying to gateway pod `w`.
pub fn applying(cx: &Cx<'_>, w: &Workload) -> Vec<usize> {
    cx.state
        .authorization_policies
        .iter()
        .enumerate()
        .filter(|(_, p)| applies(p, w, cx.root_namespace))
        .map(|(i, _)| i)
        .collect()
}

fn applies(p: &AuthorizationPolicy, w: &Workload, root_namespace: &str) -> bool {
    let in_scope =
        p.namespace == w.namespace || (!root_namespace.is_empty() && p.namespace == root_namespace);
    in_scope
        && p.target_refs.is_empty()
        && p.selector
            .as_ref()
            .is_none_or(|s| s.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
}

/// The RBAC HTTP filters for the policies at `indices`.
pub fn filters(cx: &Cx<'_>, indices: &[usize]) -> Vec<HttpFilter> {
    let policies: Vec<&AuthorizationPolicy> = indices
        .iter()
        .map(|i| &cx.state.authorization_policies[*i])
        .collect();
    waypoint::rbac::enforcing_filters(&policies, &cx.state.trust_domain)
}
