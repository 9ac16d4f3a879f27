//! The seams between the request path and the upstream/telemetry part:
//! which ClusterManager / Telemetry the binary uses, the combined xDS
//! validator, and telemetry as the route stack's [`Observer`].
//!
use std::sync::Arc;

use mesh_xds::Validator;

use crate::telemetry as telemetry_impl;
use crate::upstream as upstream_impl;
use crate::{
    route::{Observer, TraceFn},
    telemetry::RequestRecord,
};

pub use telemetry_impl::{Telemetry, TelemetryOptions};
pub use upstream_impl::{ClusterManager, ExternalOptions, UpstreamOptions};

/// Listener / RouteConfiguration checks (config) and Cluster /
/// ClusterLoadAssignment checks (upstream), for the xDS client.
pub fn validator() -> Validator {
    validator_with(ExternalOptions::default())
}

/// [`validator`], with upstream TLS files checked where `external` says
/// they are (a Cluster whose CA or client certificate cannot be read is
/// NACKed).
pub fn validator_with(external: ExternalOptions) -> Validator {
    Validator::new(move |type_url, r| {
        crate::config::validate(type_url, r)?;
        upstream_impl::validate_with(type_url, r, &external)
    })
}

/// Trace propagation on upstream-bound requests.
pub fn trace_fn() -> TraceFn {
    Arc::new(telemetry_impl::trace::continue_trace)
}

/// Finished requests → telemetry (with the Address view for peer labels).
pub struct TelemetryObserver {
    pub telemetry: Arc<Telemetry>,
    pub clusters: Arc<ClusterManager>,
}

impl Observer for TelemetryObserver {
    fn record(&self, record: RequestRecord) {
        self.telemetry.record(&record, &self.clusters.directory());
    }
}
