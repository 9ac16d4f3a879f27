//! A response body that holds the request's circuit-breaker unit and the
//! endpoint's active-request count until the body ends or is dropped.
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

use super::breaker::Guard;
use crate::body::BoxError;

/// Decrements an endpoint's active requests on drop.
#[derive(Debug)]
pub struct ActiveGuard(Arc<AtomicU64>);

impl ActiveGuard {
    pub fn new(counter: &Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(Arc::clone(counter))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct GuardedBody {
    inner: Incoming,
    guards: Option<(Guard, ActiveGuard)>,
}

impl GuardedBody {
    pub fn new(inner: Incoming, request: Guard, active: ActiveGuard) -> Self {
        GuardedBody {
            inner,
            guards: Some((request, active)),
        }
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
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guards = None;
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
