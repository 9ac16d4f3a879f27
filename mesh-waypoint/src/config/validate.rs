//! The xDS client's consumer check for LDS / RDS: a resource is accepted
//! only if it translates.
use mesh_xds::{FieldRejection, XdsResource};

use super::route_config;

/// Checks a Listener or RouteConfiguration; other types pass (the
/// upstream side checks Cluster / ClusterLoadAssignment).
pub fn validate(_type_url: &str, r: &XdsResource) -> Result<(), FieldRejection> {
    match r {
        // A gateway's Listener may also carry tcp_proxy chains.
        XdsResource::Listener(l) => crate::gateway::spec::translate(l)
            .map(|_| ())
            .map_err(Into::into),
        XdsResource::RouteConfiguration(rc) => {
            route_config::translate(rc).map(|_| ()).map_err(Into::into)
        }
        _ => Ok(()),
    }
}
