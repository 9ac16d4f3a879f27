//! The seams between the request path and the upstream/telemetry part:
//! which ClusterManager / Telemetry the binary uses, the combined xDS
//! validator, and telemetry as the route stack's [`Observer`].
//!
//! INTEGRATOR: once i5-wp-upstream is merged, replace the two `use …
//! shim_upstream` lines with `crate::upstream` / `crate::telemetry`, point
//! `route::TraceSpan` at `crate::telemetry::trace::Span`, fill `span` in
//! `route/observe.rs` (RequestRecord gains `span`), call
//! `telemetry.register_upstream(clusters.metrics())` in `app::run`, and
//! delete `shim_upstream.rs`. (Checked: with those edits a merge of both
//! branches builds, is clippy-clean and passes every test.)
use std::sync::Arc;

use mesh_xds::Validator;

use super::shim_upstream as upstream_impl;
use super::shim_upstream as telemetry_impl;
use crate::{
    route::{Observer, TraceFn},
    telemetry::RequestRecord,
};

pub use telemetry_impl::{Telemetry, TelemetryOptions};
pub use upstream_impl::{ClusterManager, UpstreamOptions};

/// Listener / RouteConfiguration checks (config) and Cluster /
/// ClusterLoadAssignment checks (upstream), for the xDS client.
pub fn validator() -> Validator {
    Validator::new(|type_url, r| {
        crate::config::validate(type_url, r)?;
        upstream_impl::validate(type_url, r)
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
