//! Serving HTTP/1 on a [`Listener`] with the timeouts every small server
//! of the mesh needs (admin, probes, metrics): request headers must arrive
//! within `header_read_timeout` (also bounding how long an idle keep-alive
//! connection waits for its next request), and no connection lives longer
//! than `max_connection_age`.
use std::{future::Future, time::Duration};

use hyper::{
    body::{Body, Incoming},
    server::conn::http1,
    service::Service,
    Request, Response,
};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::listen::{Limits, Listener};

/// Caps and timeouts of one HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub listen: Limits,
    /// From the first byte a request head is awaited to its last; an idle
    /// keep-alive connection is closed after it too.
    pub header_read_timeout: Duration,
    /// A connection is asked to close (after its current request) once
    /// this old, and cut a few seconds later.
    pub max_connection_age: Duration,
}

impl HttpLimits {
    /// Admin, probes and metrics: small requests, few clients (kubelet,
    /// Prometheus, an operator), nothing long-lived.
    pub const fn small(max_per_source: Option<usize>) -> Self {
        HttpLimits {
            listen: Limits {
                max_connections: 64,
                max_per_source,
            },
            header_read_timeout: Duration::from_secs(5),
            max_connection_age: Duration::from_secs(60),
        }
    }
}

/// How long a connection past its age may finish its current request.
const AGE_GRACE: Duration = Duration::from_secs(5);

/// Serves `service` on `listener` until `shutdown` completes; connections
/// still open then finish on their own, within their age.
pub async fn serve_http1<S, B>(
    mut listener: Listener,
    limits: HttpLimits,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _permit = accepted.permit;
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(accepted.stream), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => Some(r),
                () = tokio::time::sleep(limits.max_connection_age) => None,
            };
            let result = match ended {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(AGE_GRACE, conn).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            };
            if let Err(error) = result {
                tracing::debug!(peer = %accepted.peer, %error, "HTTP connection ended with an error");
            }
        });
    }
}
