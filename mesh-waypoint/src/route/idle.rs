//! Envoy's `stream_idle_timeout` (5 minutes by default): a stream on which
//! nothing moves for that long is ended. Istio writes `timeout: 0s` on
//! every route it generates without one, which disables the route timeout,
//! so without this bound a silent upstream would hold the request, its
//! buffers and a connection slot for ever.
//!
//! Applied where a stream can stall: waiting for the upstream's response
//! headers on a route without a timeout, and between frames of the
//! response body sent downstream. (Envoy also counts request body frames
//! as activity while it waits for headers; here the wait is bounded from
//! the request's start, so an upload that lasts longer than the idle
//! timeout needs a route timeout of its own.)
use std::{
    future::Future as _,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{Body, BoxError};

/// Envoy's default `stream_idle_timeout`.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a body stopped: nothing arrived within the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?} (stream idle timeout)")]
pub struct StreamIdle(pub Duration);

/// A body that fails with [`StreamIdle`] when no frame arrives for `idle`.
pub struct IdleBody {
    inner: Body,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl IdleBody {
    pub fn new(inner: Body, idle: Duration) -> Self {
        IdleBody {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(StreamIdle(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    /// A body whose frames come from a channel the test feeds.
    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|b| Ok::<_, BoxError>(Frame::data(b)));
        (tx, crate::body::boxed(StreamBody::new(stream)))
    }

    use tokio_stream::StreamExt as _;

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_idle_time_a_busy_one_does_not() {
        let idle = Duration::from_secs(300);
        let (tx, body) = channel_body();
        let mut body = IdleBody::new(body, idle);
        // Frames every 200 s: never idle for 300 s.
        for i in 0..5u8 {
            tokio::time::sleep(Duration::from_secs(200)).await;
            tx.send(Bytes::from(vec![i])).await.unwrap();
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from(vec![i]));
        }
        // Then silence: the body ends with the idle error, not a hang.
        let started = tokio::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<StreamIdle>().is_some(), "{err}");
        assert_eq!(started.elapsed(), idle);
        drop(tx);
    }
}
