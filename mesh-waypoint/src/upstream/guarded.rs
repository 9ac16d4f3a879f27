//! A response body that holds the request's circuit-breaker unit and the
//! endpoint's active-request count until the body ends or is dropped, and
//! gives an HTTP/1.1 connection back to its pool when the body has been
//! read to its end (a body dropped early leaves the connection to close).
use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;

use super::{breaker::Guard, pool::Release};
use crate::body::BoxError;

/// Counts one request as active, on the endpoint (least request, admin
/// dump) and on the cluster's gauge, until dropped.
#[derive(Debug)]
pub struct ActiveGuard(Arc<AtomicU64>, Gauge);

impl ActiveGuard {
    pub fn new(counter: &Arc<AtomicU64>, gauge: Gauge) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        gauge.inc();
        ActiveGuard(Arc::clone(counter), gauge)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.dec();
    }
}

pub struct GuardedBody {
    inner: Incoming,
    guards: Option<(Guard, ActiveGuard)>,
    release: Option<Release>,
}

impl GuardedBody {
    pub fn new(
        inner: Incoming,
        request: Guard,
        active: ActiveGuard,
        release: Option<Release>,
    ) -> Self {
        GuardedBody {
            inner,
            guards: Some((request, active)),
            release,
        }
    }

    fn finished(&mut self, complete: bool) {
        self.guards = None;
        if let Some(r) = self.release.take() {
            if complete {
                r.release();
            }
        }
    }
}

impl Drop for GuardedBody {
    fn drop(&mut self) {
        // Bodies nobody polled because they were empty still free the
        // connection.
        let complete = self.inner.is_end_stream();
        self.finished(complete);
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finished(true),
            Poll::Ready(Some(Err(_))) => self.finished(false),
            _ => {}
        }
        polled.map(|o| o.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
