//! The outermost layer: gives each request its [`Exchange`], counts bytes
//! both ways and reports one [`RequestRecord`] when the response body has
//! ended (or was dropped unfinished).
use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{exchange::Exchange, reply::is_grpc, stage::HttpService};
use crate::{
    body::{self, Body, BoxError},
    telemetry::RequestRecord,
    upstream::cluster_name::IstioClusterName,
};

/// Where finished requests go (telemetry: metrics, access log, spans).
pub trait Observer: Send + Sync + 'static {
    fn record(&self, record: RequestRecord);
}

/// Drops every record (tests, or telemetry off).
pub struct NoObserver;

impl Observer for NoObserver {
    fn record(&self, _record: RequestRecord) {}
}

#[derive(Clone)]
pub struct ObserveLayer(pub Arc<dyn Observer>);

// Layers wrap the boxed stack: a generic inner `S` would need its future
// to be `Send` for every lifetime of the boxed error type, which rustc
// cannot prove for the UnsyncBoxBody request.
impl Layer<HttpService> for ObserveLayer {
    type Service = Observe;
    fn layer(&self, inner: HttpService) -> Observe {
        Observe {
            observer: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Observe {
    observer: Arc<dyn Observer>,
    inner: HttpService,
}

/// A body that counts the bytes passing through it.
struct Counted {
    inner: Body,
    bytes: Arc<AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &polled {
            if let Some(d) = f.data_ref() {
                self.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The record waiting for the body's end, and what completes it.
type Pending = (RequestRecord, Arc<AtomicU64>, Instant, Arc<dyn Observer>);

/// The response body that reports the record once it ends.
struct Reporting {
    inner: Body,
    pending: Option<Pending>,
    response_bytes: u64,
    grpc_status: Option<i32>,
}

impl Reporting {
    fn finish(&mut self) {
        if let Some((mut rec, req_bytes, start, observer)) = self.pending.take() {
            rec.duration = start.elapsed();
            rec.request_bytes = req_bytes.load(Ordering::Relaxed);
            rec.response_bytes = self.response_bytes;
            if self.grpc_status.is_some() {
                rec.grpc_status = self.grpc_status;
            }
            observer.record(rec);
        }
    }
}

impl http_body::Body for Reporting {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.response_bytes += d.len() as u64;
                } else if let Some(t) = f.trailers_ref() {
                    self.grpc_status = t
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok());
                }
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Reporting {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Service<Request<Body>> for Observe {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let start = Instant::now();
        let (mut parts, b) = req.into_parts();
        let downstream = parts.extensions.get().cloned().unwrap_or_default();
        let ex = Exchange::new(downstream);
        parts.extensions.insert(ex.clone());
        let req_bytes = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: b,
            bytes: req_bytes.clone(),
        };
        let method = parts.method.clone();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let grpc = is_grpc(&parts.headers);
        let req = Request::from_parts(parts, body::boxed(counted));
        let observer = self.observer.clone();
        let mut inner = self.inner.clone();
        Box::pin(async move {
            // Every stack service is always ready (poll_ready is Ready).
            let Ok(resp) = inner.call(req).await;
            let (parts, b) = resp.into_parts();
            let header_grpc = parts
                .headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let record = RequestRecord {
                source: ex.downstream.peer.clone(),
                service: destination_service(&ex),
                cluster: ex.cluster(),
                workload: ex.workload(),
                method,
                path,
                protocol: if grpc { "grpc" } else { "http" },
                status: parts.status.as_u16(),
                grpc_status: header_grpc,
                flags: ex.flags_text(),
                duration: Default::default(),
                request_bytes: 0,
                response_bytes: 0,
                span: ex.span(),
            };
            let reporting = Reporting {
                inner: b,
                pending: Some((record, req_bytes, start, observer)),
                response_bytes: 0,
                grpc_status: None,
            };
            Ok(Response::from_parts(parts, body::boxed(reporting)))
        })
    }
}

/// The destination service a request's metrics name, as Istio's stats do:
/// the host of the upstream cluster it went to, else (no upstream: a
/// fault, a redirect, no route) the matched virtual host's service.
fn destination_service(ex: &Exchange) -> Option<Arc<str>> {
    ex.cluster()
        .as_deref()
        .and_then(IstioClusterName::parse)
        .map(|c| Arc::from(c.host))
        .or_else(|| ex.vhost().map(|v| Arc::from(v.service())))
}
