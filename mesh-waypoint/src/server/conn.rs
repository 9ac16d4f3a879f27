//! Serving one connection (TCP or tunnel pipe) with hyper, HTTP/1.1 or h2
//! by preface, until it ends or shutdown asks it to finish gracefully.
use std::{sync::Arc, time::Duration};

use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
};

use crate::{
    body,
    route::{Downstream, Proxy},
};

/// A client must send a whole HTTP/1.1 request head within this time, also
/// when a kept-alive connection waits for its next request (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest h2 request header block (Envoy's default `max_request_headers_kb`
/// is 60); HTTP/1.1 heads are bounded by hyper's read buffer (~400 KiB).
pub const MAX_HEADER_BYTES: usize = 60 * 1024;
/// HTTP/2 liveness pings: a peer that stops answering is dropped.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent h2 streams per downstream connection.
const H2_MAX_STREAMS: u32 = 1024;

/// hyper's server with the limits above.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(H2_MAX_STREAMS);
    builder
}

/// Serves `io` until the peer closes it or `shutdown` turns true (then
/// in-flight requests finish; h2 gets GOAWAY, HTTP/1.1 closes after the
/// current response).
pub async fn serve<I>(
    io: I,
    proxy: Arc<Proxy>,
    downstream: Downstream,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let proxy = proxy.clone();
        let downstream = downstream.clone();
        async move {
            let (mut parts, incoming) = req.into_parts();
            parts.extensions.insert(downstream);
            let req = hyper::Request::from_parts(parts, body::boxed(incoming));
            Ok::<_, std::convert::Infallible>(proxy.handle(req).await)
        }
    });
    let builder = builder();
    let conn = builder.serve_connection(TokioIo::new(super::unvectored::Unvectored(io)), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = super::stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "downstream connection ended with an error");
    }
}
