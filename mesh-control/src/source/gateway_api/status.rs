//! What the Gateway API resources' status says, computed with every load:
//! per HTTPRoute parent `Accepted` and `ResolvedRefs`, per Gateway
//! `Accepted`, `Programmed` and its listeners'. The Kubernetes source
//! writes it to the status subresources ([`Self::route_status_json`],
//! [`Self::gateway_status_json`]); the analyzer reports the `False` ones.
use serde_json::{json, Value};

use super::http_route::ParentRef;

/// A condition type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    Accepted,
    ResolvedRefs,
    Programmed,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::Programmed => "Programmed",
        }
    }
}

/// Gateway API condition reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Accepted,
    ResolvedRefs,
    Programmed,
    NoMatchingParent,
    NotAllowedByListeners,
    NoMatchingListenerHostname,
    BackendNotFound,
    RefNotPermitted,
    InvalidKind,
    UnsupportedProtocol,
    UnsupportedValue,
    InvalidCertificateRef,
    InvalidRouteKinds,
    /// No pod carries the Gateway's name label yet.
    NoResources,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::Programmed => "Programmed",
            Self::NoMatchingParent => "NoMatchingParent",
            Self::NotAllowedByListeners => "NotAllowedByListeners",
            Self::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Self::BackendNotFound => "BackendNotFound",
            Self::RefNotPermitted => "RefNotPermitted",
            Self::InvalidKind => "InvalidKind",
            Self::UnsupportedProtocol => "UnsupportedProtocol",
            Self::UnsupportedValue => "UnsupportedValue",
            Self::InvalidCertificateRef => "InvalidCertificateRef",
            Self::InvalidRouteKinds => "InvalidRouteKinds",
            Self::NoResources => "NoResources",
        }
    }
}

/// One condition; `field` says which field of the resource it is about
/// (`spec.parentRefs[0]`, `spec.rules[0].backendRefs[1]`), for the analyzer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
    pub field: String,
}

impl Condition {
    pub fn ok(kind: ConditionType, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: true,
            reason,
            message: message.into(),
            field: String::new(),
        }
    }

    pub fn failed(
        kind: ConditionType,
        reason: Reason,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            status: false,
            reason,
            message: message.into(),
            field: field.into(),
        }
    }

    fn json(&self, generation: Option<i64>, now: &str) -> Value {
        let mut c = json!({
            "type": self.kind.as_str(),
            "status": if self.status { "True" } else { "False" },
            "reason": self.reason.as_str(),
            "message": self.message,
            "lastTransitionTime": now,
        });
        if let Some(g) = generation {
            c["observedGeneration"] = json!(g);
        }
        c
    }
}

/// An HTTPRoute's status for one of its parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentStatus {
    pub parent: ParentRef,
    /// `spec.parentRefs[i]`.
    pub field: String,
    pub conditions: Vec<Condition>,
}

/// An HTTPRoute's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStatus {
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub generation: Option<i64>,
    pub parents: Vec<ParentStatus>,
}

/// One listener's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStatus {
    pub name: String,
    /// `spec.listeners[i]`.
    pub field: String,
    pub attached_routes: u32,
    /// `HTTPRoute` for HTTP / HTTPS listeners.
    pub supported_kinds: Vec<&'static str>,
    pub conditions: Vec<Condition>,
}

/// A Gateway's (class `istio`) status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayStatus {
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerStatus>,
}

/// Everything one load says about the Gateway API resources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub routes: Vec<RouteStatus>,
    pub gateways: Vec<GatewayStatus>,
}

impl RouteStatus {
    /// `HTTPRoute <namespace>/<name>`.
    pub fn resource(&self) -> String {
        format!("HTTPRoute {}/{}", self.namespace, self.name)
    }

    /// The `status` object of the HTTPRoute (`parents[]`), with `now` as
    /// every condition's transition time.
    pub fn status_json(&self, now: &str) -> Value {
        let parents: Vec<Value> = self
            .parents
            .iter()
            .map(|p| {
                let mut parent_ref = json!({
                    "group": p.parent.group,
                    "kind": p.parent.kind,
                    "namespace": p.parent.namespace,
                    "name": p.parent.name,
                });
                if let Some(s) = &p.parent.section_name {
                    parent_ref["sectionName"] = json!(s);
                }
                if let Some(port) = p.parent.port {
                    parent_ref["port"] = json!(port);
                }
                json!({
                    "parentRef": parent_ref,
                    "controllerName": super::CONTROLLER_NAME,
                    "conditions": p.conditions.iter().map(|c| c.json(self.generation, now)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "parents": parents })
    }
}

impl GatewayStatus {
    /// `Gateway <namespace>/<name>`.
    pub fn resource(&self) -> String {
        format!("Gateway {}/{}", self.namespace, self.name)
    }

    /// The `status` object of the Gateway (`conditions`, `listeners`).
    pub fn status_json(&self, now: &str) -> Value {
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|c| c.json(self.generation, now))
            .collect();
        let listeners: Vec<Value> = self
            .listeners
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "attachedRoutes": l.attached_routes,
                    "supportedKinds": l.supported_kinds.iter().map(|k| json!({"group": super::GROUP, "kind": k})).collect::<Vec<_>>(),
                    "conditions": l.conditions.iter().map(|c| c.json(self.generation, now)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "conditions": conditions, "listeners": listeners })
    }
}
