//! Hop from the waypoint to an endpoint: clusters (CDS), their endpoints
//! (EDS, resolved against the Address xDS for HBONE), load balancing,
//! connection pools and circuit breakers, outlier detection.
pub mod api;

pub use api::{RetryPermit, SendContext, Upstream, UpstreamError, UpstreamResponse};
