//! Waypoints (Gateway API `Gateway`s of class `istio-waypoint`) and how
//! services attach to them (`istio.io/use-waypoint` labels), as the
//! control plane holds them after the source resolved the labels.

/// Namespace / Service label naming the waypoint to use (`none`: opt out).
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";
/// Namespace of the waypoint named by [`USE_WAYPOINT_LABEL`], when not the
/// labelled object's own.
pub const USE_WAYPOINT_NAMESPACE_LABEL: &str = "istio.io/use-waypoint-namespace";
/// Label Istio's deployment controller puts on a Gateway's pods.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// `spec.gatewayClassName` of a waypoint.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";

/// `<namespace>/<name>` of a waypoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WaypointRef {
    pub namespace: String,
    pub name: String,
}

impl WaypointRef {
    /// The key of [`crate::model::MeshState::waypoints`]: `<namespace>/<name>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Name of the waypoint's Envoy Listener and RouteConfiguration:
    /// `waypoint/<namespace>/<name>`.
    pub fn resource_name(&self) -> String {
        format!("waypoint/{}/{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for WaypointRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A waypoint and its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waypoint {
    pub name: String,
    pub namespace: String,
    /// File it was read from (for findings).
    pub file: String,
    /// Uids of its pods (Pods of the namespace labelled
    /// `gateway.networking.k8s.io/gateway-name: <name>`), sorted.
    pub pods: Vec<String>,
}

impl Waypoint {
    pub fn reference(&self) -> WaypointRef {
        WaypointRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}
