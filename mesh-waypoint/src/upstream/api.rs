//! What the route side calls: the boundary between `route/` and `upstream/`.
use std::{net::SocketAddr, sync::Arc};

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};

use crate::body::Body;

/// Per-attempt facts the load balancer and the pool need.
#[derive(Debug, Clone, Default)]
pub struct SendContext {
    /// Hash of the route's `hash_policy` (consistent hashing); None when
    /// the route has none.
    pub hash: Option<u64>,
    /// Hosts earlier attempts of this request went to
    /// (`previous_hosts` retry predicate): avoided when others exist.
    pub previous_hosts: Vec<SocketAddr>,
}

/// A response and where it came from.
pub struct UpstreamResponse {
    pub response: Response<Body>,
    /// The endpoint that answered.
    pub endpoint: SocketAddr,
    /// Istio workload uid of that endpoint, when known (telemetry).
    pub workload: Option<Arc<str>>,
}

/// Why no response came back; each is one of Envoy's response flags.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Circuit breaker open (max connections / pending / requests).
    #[error("upstream overflow ({0})")]
    Overflow(&'static str),
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    #[error("upstream connect error: {0}")]
    ConnectFailure(String),
    #[error("upstream reset before response: {0}")]
    Reset(String),
    /// An HTTP/2 upstream refused the stream (`REFUSED_STREAM`): nothing
    /// was processed, so `retryOn: refused-stream` may retry it.
    #[error("upstream refused the stream: {0}")]
    RefusedStream(String),
    #[error("unknown cluster {0}")]
    UnknownCluster(String),
}

impl UpstreamError {
    /// Envoy's short response flag.
    pub fn flag(&self) -> &'static str {
        match self {
            UpstreamError::Overflow(_) => "UO",
            UpstreamError::NoHealthyUpstream => "UH",
            UpstreamError::ConnectFailure(_) => "UF",
            UpstreamError::Reset(_) | UpstreamError::RefusedStream(_) => "UR",
            UpstreamError::UnknownCluster(_) => "NC",
        }
    }

    /// The status the downstream sees when no retry saves the request.
    pub fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    /// `connect-failure` / `reset` / `refused-stream` retry classes.
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, UpstreamError::ConnectFailure(_))
    }

    /// Any reset before a response, refused streams included.
    pub fn is_reset(&self) -> bool {
        matches!(
            self,
            UpstreamError::Reset(_) | UpstreamError::RefusedStream(_)
        )
    }

    pub fn is_refused_stream(&self) -> bool {
        matches!(self, UpstreamError::RefusedStream(_))
    }
}

/// One unit of the cluster's `max_retries` budget, held while the retry runs.
pub struct RetryPermit(pub Box<dyn Send + Sync>);

/// The upstream side of the waypoint.
pub trait Upstream: Send + Sync + 'static {
    /// Sends one attempt to a host of `cluster` chosen by its LB policy.
    fn send(
        &self,
        cluster: &str,
        req: Request<Body>,
        ctx: SendContext,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>>;

    /// Takes one of the cluster's `max_retries`; None when exhausted.
    fn retry_permit(&self, cluster: &str) -> Option<RetryPermit>;
}
