//! AuthorizationPolicy → `istio.security.Authorization`, as istiod converts
//! policies for ambient mode's L4 agents (docs/contracts/workload-xds.md,
//! `istio.security.Authorization`), plus the findings of that
//! conversion: what was not published or not enforced as written.
//!
//! - [`translate`]: every publishable policy, and the findings. Policies
//!   whose `targetRefs` a waypoint enforces (its Gateway, a Service bound
//!   to it) are the waypoint's ([`super::waypoint::rbac`]), not sent here.
//! - [`policies_for_workload`]: the names a workload lists in
//!   `authorization_policies` (selector and `targetRefs` policies).
//! - [`index`]: the lookups that keep both linear in the mesh's size.
//! - [`rules`]: one policy rule → `Rule{clauses}`, with Istio's fail-safe
//!   handling of L7 attributes.
//!
//! Both the xDS conversion and the source (which logs the findings once per
//! load) call this; it is pure and cheap, so nothing is cached.
mod index;
mod rules;

use std::collections::BTreeMap;

use index::ByLabel;
pub use index::WorkloadPolicies;

use mesh_xds::proto::istio_security::{Action, Authorization, Scope};

use crate::{
    analyze::{codes, Finding, Severity},
    model::{
        authz::{AuthzAction, TargetRef},
        AuthorizationPolicy, MeshState, Service, Workload,
    },
};

/// The result of converting every policy of a state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// `(<namespace>/<name>, resource)`, sorted by name.
    pub authorizations: Vec<(String, Authorization)>,
    /// Tolerated problems, in policy order (all [`Severity::Warning`]).
    pub findings: Vec<Finding>,
}

/// Resource name of a policy: `<namespace>/<name>`.
pub fn resource_name(policy: &AuthorizationPolicy) -> String {
    format!("{}/{}", policy.namespace, policy.name)
}

/// Converts every policy of `state`. `root_namespace` makes namespace-wide
/// policies mesh-wide (`GLOBAL`) and selector policies cross-namespace.
pub fn translate(state: &MeshState, root_namespace: &str) -> Translation {
    let mut out = Translation::default();
    let workloads = ByLabel::new(state);
    for policy in &state.authorization_policies {
        if let Some(authz) =
            translate_one(state, &workloads, policy, root_namespace, &mut out.findings)
        {
            out.authorizations.push((resource_name(policy), authz));
        }
    }
    out.authorizations.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Names (`<namespace>/<name>`) of the policies that select `w` by
/// selector or `targetRefs`, sorted. Only mesh workloads are listed: the
/// agents police nothing else. Namespace-wide and global policies are not
/// listed (their scope says where they apply).
/// One workload's answer; for many, build a [`WorkloadPolicies`] once.
pub fn policies_for_workload(state: &MeshState, w: &Workload, root_namespace: &str) -> Vec<String> {
    WorkloadPolicies::new(state, root_namespace).of(w)
}

/// CUSTOM policies, and policies targeting only objects agents do not
/// serve (or that a waypoint enforces), are not sent at all.
fn publishable(state: &MeshState, policy: &AuthorizationPolicy, root_namespace: &str) -> bool {
    !matches!(policy.action, AuthzAction::Custom { .. })
        && (policy.target_refs.is_empty()
            || policy
                .target_refs
                .iter()
                .any(|t| agent_target(state, policy, t, root_namespace)))
}

fn is_service(target: &TargetRef) -> bool {
    target.group.is_empty() && target.kind == "Service"
}

/// A Service target the node agents enforce: one not behind a waypoint
/// (the waypoint enforces those, [`super::waypoint::rbac`]).
fn agent_target(
    state: &MeshState,
    policy: &AuthorizationPolicy,
    target: &TargetRef,
    root_namespace: &str,
) -> bool {
    is_service(target)
        && !super::waypoint::rbac::waypoint_target(state, policy, target, root_namespace)
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Service a `targetRef` names, in the policy's namespace.
fn target_service<'s>(
    state: &'s MeshState,
    policy: &AuthorizationPolicy,
    target: &TargetRef,
) -> Option<(&'s String, &'s Service)> {
    state
        .services
        .iter()
        .find(|(_, s)| s.namespace == policy.namespace && s.name == target.name)
}

/// True when `policy` names `w` by selector or by a Service `targetRef`:
/// the pairwise scan [`WorkloadPolicies`] must agree with.
#[cfg(test)]
fn applies_to(
    state: &MeshState,
    policy: &AuthorizationPolicy,
    w: &Workload,
    root_namespace: &str,
) -> bool {
    if let Some(selector) = &policy.selector {
        let in_scope = policy.namespace == w.namespace || policy.namespace == root_namespace;
        return in_scope && selects(selector, &w.labels);
    }
    policy
        .target_refs
        .iter()
        .filter(|t| agent_target(state, policy, t, root_namespace))
        .filter_map(|t| target_service(state, policy, t))
        .any(|(key, _)| w.services.contains_key(key))
}

fn translate_one(
    state: &MeshState,
    workloads: &ByLabel<'_>,
    policy: &AuthorizationPolicy,
    root_namespace: &str,
    findings: &mut Vec<Finding>,
) -> Option<Authorization> {
    let warn = |code, field: Option<String>, message: String, suggestion: &str| Finding {
        severity: Severity::Warning,
        code,
        resource: policy.resource(),
        file: Some(policy.file.clone()),
        field,
        message,
        suggestion: suggestion.to_string(),
    };
    let action = match &policy.action {
        AuthzAction::Allow => Action::Allow,
        AuthzAction::Deny => Action::Deny,
        AuthzAction::Audit => Action::Audit,
        AuthzAction::Custom { provider } => {
            findings.push(warn(
                codes::AUTHZ_CUSTOM,
                Some("spec.action".into()),
                format!("action CUSTOM (provider {provider:?}) needs an external authorizer, which this mesh does not support yet; the policy is not enforced"),
                "use ALLOW/DENY rules, or enforce this check in the application until external authorization is supported",
            ));
            return None;
        }
    };
    for target in &policy.target_refs {
        let field = Some(target.field.clone());
        if super::waypoint::rbac::waypoint_target(state, policy, target, root_namespace) {
            // Enforced by the waypoint, at L7.
        } else if !is_service(target) {
            findings.push(warn(
                codes::AUTHZ_TARGET_NOT_ENFORCED,
                field,
                format!("targetRef to {} {:?} names no waypoint of namespace {} (this mesh runs no other gateways yet); not enforced", target.kind, target.name, policy.namespace),
                "target a waypoint (Gateway of class istio-waypoint) or a Service bound to one, or use spec.selector for the node agents",
            ));
        } else if target_service(state, policy, target).is_none() {
            findings.push(warn(
                codes::AUTHZ_TARGET_UNKNOWN_SERVICE,
                field,
                format!(
                    "Service {}/{} does not exist; the policy applies to no workload",
                    policy.namespace, target.name
                ),
                "check the Service name (targetRefs name Services of the policy's own namespace)",
            ));
        }
    }
    if !publishable(state, policy, root_namespace) {
        return None;
    }
    if let Some(selector) = &policy.selector {
        let matched: Vec<&Workload> = workloads
            .selected(selector, &policy.namespace, root_namespace)
            .collect();
        // An ingress gateway's pods are outside the mesh, but the gateway
        // enforces the policies selecting them.
        let gateway = |w: &Workload| state.ingress_gateways.iter().any(|g| g.selects_workload(w));
        if !matched.iter().any(|w| w.mesh || gateway(w)) {
            let outside = if matched.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} matching pod(s) are outside the mesh, where agents enforce nothing)",
                    matched.len()
                )
            };
            let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            findings.push(warn(
                codes::AUTHZ_SELECTOR_EMPTY,
                Some("spec.selector.matchLabels".into()),
                format!(
                    "selector {{{}}} matches no mesh workload{outside}",
                    labels.join(",")
                ),
                "check the labels against the pods, and that their namespace is labelled istio.io/dataplane-mode=ambient",
            ));
        }
    }
    let scope = if policy.selector.is_some() || !policy.target_refs.is_empty() {
        Scope::WorkloadSelector
    } else if policy.namespace == root_namespace {
        Scope::Global
    } else {
        Scope::Namespace
    };
    let rules = policy
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| rules::translate(policy, i, rule, findings))
        .collect();
    Some(Authorization {
        name: policy.name.clone(),
        namespace: policy.namespace.clone(),
        scope: scope as i32,
        action: action as i32,
        rules,
        dry_run: policy.dry_run,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
