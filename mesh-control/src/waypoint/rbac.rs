//! L7 AuthorizationPolicies enforced by waypoints (filled in by the RBAC
//! translation).
use std::collections::HashMap;

use envoy_types::pb::{
    envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter,
    google::protobuf::Any,
};

use super::Cx;
use crate::model::{Service, WaypointRef};

/// The RBAC filters per waypoint and per-host configs.
#[derive(Debug, Default)]
pub struct Rbac {}

pub fn translate(_cx: &Cx<'_>) -> Rbac {
    Rbac::default()
}

impl Rbac {
    pub fn filters(&self, _wp: &WaypointRef) -> Vec<HttpFilter> {
        vec![]
    }

    pub fn per_host(&self, _svc: &Service) -> HashMap<String, Any> {
        HashMap::new()
    }
}
