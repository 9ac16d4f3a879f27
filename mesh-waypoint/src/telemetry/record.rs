//! What the route side hands telemetry once per finished request.
use std::{net::IpAddr, sync::Arc, time::Duration};

/// The downstream (source) as the waypoint knows it: the HBONE peer's
/// identity and the source pod address (`forwarded: for=`).
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// `spiffe://…` of the mTLS peer; None on the plain listener.
    pub principal: Option<String>,
    pub ip: Option<IpAddr>,
}

/// One finished request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub source: Peer,
    /// Destination service FQDN (`reviews.default.svc.cluster.local`);
    /// None when no virtual host matched.
    pub service: Option<Arc<str>>,
    /// The cluster the request was sent to (last attempt).
    pub cluster: Option<Arc<str>>,
    /// Istio workload uid of the endpoint that answered.
    pub workload: Option<Arc<str>>,
    pub method: http::Method,
    pub path: String,
    /// "http" or "grpc".
    pub protocol: &'static str,
    pub status: u16,
    pub grpc_status: Option<i32>,
    /// Envoy response flags joined by ",", "-" when none.
    pub flags: String,
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The waypoint's span ([`super::trace::continue_trace`]), when the
    /// request was traced.
    pub span: Option<super::trace::Span>,
}
