//! Serving one connection (TCP or tunnel pipe) with hyper, HTTP/1.1 or h2
//! by preface, until it ends or shutdown asks it to finish gracefully.
use std::sync::Arc;

use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
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
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
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
