//! Per-request telemetry: Istio's `istio_request*` metrics with
//! `reporter="waypoint"`, the access log, trace propagation and export.
pub mod record;

pub use record::{Peer, RequestRecord};
