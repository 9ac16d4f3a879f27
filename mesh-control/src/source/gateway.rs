//! Gateway API `Gateway` (`gateway.networking.k8s.io/v1`, `v1beta1`):
//! those of class `istio-waypoint` are waypoints; those of class `istio`
//! are ingress gateways ([`super::gateway_api`]); other classes (other
//! implementations) are accepted, kept raw and otherwise ignored. The fields a waypoint needs are checked, each problem naming
//! the field.
use serde_yaml::Value;

use super::{
    fields::{self, lookup, Reporter},
    objects::Origin,
};
use crate::model::waypoint::WAYPOINT_CLASS;

/// Gateway API versions whose Gateway the mesh reads.
const VERSIONS: &[&str] = &["v1", "v1beta1"];

/// A waypoint as declared, before its pods are found.
#[derive(Debug, Clone)]
pub(crate) struct WaypointObj {
    pub name: String,
    pub namespace: String,
    pub origin: Origin,
}

/// Reads the Gateway in `value`: `Some` when it is a valid waypoint;
/// problems are reported for invalid Gateways of any class.
pub(crate) fn gateway(
    rep: &mut Reporter<'_>,
    value: &Value,
    version: &str,
    name: &str,
    namespace: &str,
    origin: &Origin,
) -> Option<WaypointObj> {
    let before = rep.count();
    if !VERSIONS.contains(&version) {
        rep.error(
            "apiVersion",
            format!("gateway.networking.k8s.io/{version} is not a Gateway version the mesh reads (use gateway.networking.k8s.io/v1 or v1beta1)"),
        );
        return None;
    }
    let class = fields::req_str(rep, value, "spec.gatewayClassName");
    for (i, listener) in fields::seq(rep, value, "spec.listeners").iter().enumerate() {
        let at = |f: &str| format!("spec.listeners[{i}].{f}");
        if !listener.is_mapping() {
            rep.error(
                format!("spec.listeners[{i}]"),
                format!("expected a mapping, found {}", fields::type_name(listener)),
            );
            continue;
        }
        for key in ["name", "protocol"] {
            match lookup(listener, key) {
                None => rep.error(at(key), "required field is missing"),
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(other) => rep.error(
                    at(key),
                    format!("expected a non-empty string, found {}", fields::show(other)),
                ),
            }
        }
        match lookup(listener, "port") {
            None => rep.error(at("port"), "required field is missing"),
            Some(port) => {
                fields::port(rep, &at("port"), port);
            }
        }
    }
    if rep.count() != before {
        return None;
    }
    let class = class?;
    if class == super::gateway_api::INGRESS_CLASS {
        // An ingress gateway: read by super::gateway_api.
        return None;
    }
    if class != WAYPOINT_CLASS {
        tracing::debug!(
            file = %origin.file,
            gateway = %format!("{namespace}/{name}"),
            %class,
            "Gateway of another class than {WAYPOINT_CLASS}: ignored"
        );
        return None;
    }
    Some(WaypointObj {
        name: name.to_string(),
        namespace: namespace.to_string(),
        origin: origin.clone(),
    })
}
