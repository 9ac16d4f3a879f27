//! L7 AuthorizationPolicies enforced by waypoints. A policy whose
//! `targetRefs` name a waypoint (`Gateway`) applies to every service bound
//! to it; one naming a `Service` bound to a waypoint applies to that
//! service; one in the root namespace naming the `istio-waypoint`
//! `GatewayClass` applies to every waypoint's services. Such policies are
//! the waypoint's, not the node agents' ([`crate::translate::authorization`]
//! leaves them out).
//!
//! On the wire (Istio's layout): the listener carries one
//! `envoy.filters.http.rbac.<action>` filter per action in use, with no
//! rules (allow all); each affected VirtualHost overrides it through
//! `typed_per_filter_config[<filter>] = RBACPerRoute{ rbac: RBAC{ rules:
//! RBAC{ action, policies } } }`. Rules are translated by [`rules`].
//! [`enforcing_filters`] puts the same rules on the filters themselves,
//! for an ingress gateway's listeners.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use envoy_types::pb::{
    envoy::{
        config::rbac::v3::{rbac::Action, Rbac as RbacRules},
        extensions::filters::{
            http::rbac::v3::{Rbac as RbacFilter, RbacPerRoute},
            network::http_connection_manager::v3::HttpFilter,
        },
    },
    google::protobuf::Any,
};

use super::{listener::http_filter, pb, Cx};
use crate::{
    model::{
        authz::{AuthzAction, TargetRef},
        waypoint::WAYPOINT_CLASS,
        AuthorizationPolicy, MeshState, Service, WaypointRef,
    },
    translate::workload::service_resource_name,
};

pub mod rules;

pub const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
pub const RBAC_PER_ROUTE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

/// The actions a waypoint enforces, in filter order (Istio's: DENY before
/// ALLOW; AUDIT only logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Deny,
    Allow,
    Audit,
}

impl Kind {
    fn of(action: &AuthzAction) -> Option<Kind> {
        match action {
            AuthzAction::Deny => Some(Kind::Deny),
            AuthzAction::Allow => Some(Kind::Allow),
            AuthzAction::Audit => Some(Kind::Audit),
            AuthzAction::Custom { .. } => None,
        }
    }

    /// `envoy.filters.http.rbac.deny` / `.allow` / `.audit`.
    pub fn filter_name(self) -> &'static str {
        match self {
            Kind::Deny => "envoy.filters.http.rbac.deny",
            Kind::Allow => "envoy.filters.http.rbac.allow",
            Kind::Audit => "envoy.filters.http.rbac.audit",
        }
    }

    fn envoy_action(self) -> Action {
        match self {
            Kind::Deny => Action::Deny,
            Kind::Allow => Action::Allow,
            Kind::Audit => Action::Log,
        }
    }
}

/// True when `target` of `policy` is enforced by a waypoint: a Gateway
/// that is an existing waypoint, or a Service attached to one (both in
/// the policy's namespace), or — from the root namespace — the
/// `istio-waypoint` GatewayClass (every waypoint).
pub fn waypoint_target(
    state: &MeshState,
    policy: &AuthorizationPolicy,
    target: &TargetRef,
    root_namespace: &str,
) -> bool {
    !targeted_services(state, policy, target, root_namespace).is_empty()
        || (is_gateway(target)
            && state
                .waypoints
                .contains_key(&format!("{}/{}", policy.namespace, target.name)))
        || waypoint_class(policy, target, root_namespace)
}

fn waypoint_class(policy: &AuthorizationPolicy, t: &TargetRef, root_namespace: &str) -> bool {
    t.kind == "GatewayClass" && t.name == WAYPOINT_CLASS && policy.namespace == root_namespace
}

fn is_gateway(t: &TargetRef) -> bool {
    t.kind == "Gateway" && (t.group == "gateway.networking.k8s.io" || t.group.is_empty())
}

/// The services (bound to an existing waypoint) `target` covers.
fn targeted_services<'s>(
    state: &'s MeshState,
    policy: &AuthorizationPolicy,
    target: &TargetRef,
    root_namespace: &str,
) -> Vec<&'s Service> {
    let bound = |s: &&Service| state.service_waypoint(s).is_some();
    if waypoint_class(policy, target, root_namespace) {
        state.services.values().filter(bound).collect()
    } else if is_gateway(target) {
        let wp = WaypointRef {
            namespace: policy.namespace.clone(),
            name: target.name.clone(),
        };
        state
            .services
            .values()
            .filter(|s| s.waypoint.as_ref() == Some(&wp))
            .filter(bound)
            .collect()
    } else if target.group.is_empty() && target.kind == "Service" {
        state
            .services
            .values()
            .filter(|s| s.namespace == policy.namespace && s.name == target.name)
            .filter(bound)
            .collect()
    } else {
        vec![]
    }
}

/// The RBAC filters of each waypoint and the per-VirtualHost configs.
#[derive(Debug, Default)]
pub struct Rbac {
    kinds: BTreeMap<WaypointRef, BTreeSet<Kind>>,
    /// Service resource name → filter name → RBACPerRoute.
    per_host: BTreeMap<String, HashMap<String, Any>>,
}

/// Collects the waypoint policies of the mesh.
pub fn translate(cx: &Cx<'_>, root_namespace: &str) -> Rbac {
    let state = cx.state;
    // Service key → action → policies, in policy order.
    let mut by_service: BTreeMap<String, (&Service, BTreeMap<Kind, Vec<&AuthorizationPolicy>>)> =
        BTreeMap::new();
    for policy in &state.authorization_policies {
        let Some(kind) = Kind::of(&policy.action) else {
            continue;
        };
        if policy.dry_run {
            tracing::debug!(policy = %policy.resource(), "dry-run policy: not enforced by the waypoint");
            continue;
        }
        let mut seen = BTreeSet::new();
        for target in &policy.target_refs {
            for svc in targeted_services(state, policy, target, root_namespace) {
                let key = service_resource_name(svc);
                if !seen.insert(key.clone()) {
                    continue;
                }
                by_service
                    .entry(key)
                    .or_insert_with(|| (svc, BTreeMap::new()))
                    .1
                    .entry(kind)
                    .or_default()
                    .push(policy);
            }
        }
    }
    let mut out = Rbac::default();
    for (key, (svc, kinds)) in by_service {
        let Some(wp) = svc.waypoint.clone() else {
            continue;
        };
        let mut configs = HashMap::new();
        for (kind, policies) in kinds {
            let rules = RbacRules {
                action: kind.envoy_action() as i32,
                policies: policies
                    .iter()
                    .flat_map(|p| rules::policies(p, kind, &state.trust_domain))
                    .collect(),
                ..Default::default()
            };
            let per_route = RbacPerRoute {
                rbac: Some(RbacFilter {
                    rules: Some(rules),
                    ..Default::default()
                }),
            };
            configs.insert(
                kind.filter_name().to_string(),
                pb::any(RBAC_PER_ROUTE_TYPE, &per_route),
            );
            out.kinds.entry(wp.clone()).or_default().insert(kind);
        }
        out.per_host.insert(key, configs);
    }
    out
}

/// RBAC filters that enforce `policies` themselves (rules on the filter,
/// no per-VirtualHost overrides), as an ingress gateway's listeners carry
/// them: one per action in use, DENY before ALLOW, AUDIT last. CUSTOM and
/// dry-run policies are left out, as for waypoints. An ALLOW filter whose
/// rules were all dropped by fail-safe handling keeps an empty rule set:
/// it allows nothing.
pub fn enforcing_filters(policies: &[&AuthorizationPolicy], trust_domain: &str) -> Vec<HttpFilter> {
    let mut by_kind: BTreeMap<Kind, Vec<&AuthorizationPolicy>> = BTreeMap::new();
    for policy in policies {
        let Some(kind) = Kind::of(&policy.action) else {
            continue;
        };
        if policy.dry_run {
            continue;
        }
        by_kind.entry(kind).or_default().push(policy);
    }
    by_kind
        .into_iter()
        .map(|(kind, policies)| {
            let rules = RbacRules {
                action: kind.envoy_action() as i32,
                policies: policies
                    .iter()
                    .flat_map(|p| rules::policies(p, kind, trust_domain))
                    .collect(),
                ..Default::default()
            };
            let filter = RbacFilter {
                rules: Some(rules),
                ..Default::default()
            };
            http_filter(kind.filter_name(), pb::any(RBAC_TYPE, &filter))
        })
        .collect()
}

impl Rbac {
    /// The listener's RBAC filters for `wp` (no rules: they allow all
    /// unless a VirtualHost overrides them).
    pub fn filters(&self, wp: &WaypointRef) -> Vec<HttpFilter> {
        self.kinds
            .get(wp)
            .into_iter()
            .flatten()
            .map(|k| http_filter(k.filter_name(), pb::any(RBAC_TYPE, &RbacFilter::default())))
            .collect()
    }

    /// `typed_per_filter_config` of the VirtualHosts of `svc`.
    pub fn per_host(&self, svc: &Service) -> HashMap<String, Any> {
        self.per_host
            .get(&service_resource_name(svc))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
