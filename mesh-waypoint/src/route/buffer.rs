//! The request body, streamed to the first attempt while a copy is kept
//! (up to a limit) so a retry or a mirror can send it again — as Envoy
//! buffers for retries. Nothing waits for the whole body before the first
//! attempt, so client-streaming and bidirectional gRPC flow through.
//!
//! Each [`Replay::body`] is a reader: it first replays the recorded frames,
//! then continues from the downstream body. Only the newest reader may
//! pull from the downstream (an abandoned attempt's body, still held by a
//! connection, gets an error instead of stealing frames). Once more than
//! the limit was seen, the copy is dropped and no further reader is given.
//! The limit counts each kept chunk's overhead ([`CHUNK_OVERHEAD`]) as well
//! as its payload.
use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{self, Body, BoxError};

/// What one kept data chunk costs beyond its payload (its slot, the
/// `Bytes` handle, the allocation's header), counted against the limit so
/// a body of 1-byte h2 frames cannot hold ~100× the limit.
pub const CHUNK_OVERHEAD: usize = 64;

enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Recorded {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Recorded::Data(b) => Frame::data(b.clone()),
            Recorded::Trailers(t) => Frame::trailers(t.clone()),
        }
    }
}

struct Tee {
    inner: Body,
    frames: Vec<Recorded>,
    /// Frames pulled from `inner` so far (recorded or not).
    seen: usize,
    bytes: usize,
    limit: usize,
    /// The copy was dropped (too large) or the downstream body failed.
    lost: bool,
    ended: bool,
    /// Id of the reader allowed to pull from `inner`.
    current: u64,
}

/// The shared request body of one request.
pub struct Replay {
    tee: Arc<Mutex<Tee>>,
    next_id: u64,
}

impl Replay {
    pub fn new(b: Body, limit: usize) -> Self {
        let ended = b.is_end_stream();
        Replay {
            tee: Arc::new(Mutex::new(Tee {
                inner: b,
                frames: Vec::new(),
                seen: 0,
                bytes: 0,
                limit,
                lost: false,
                ended,
                current: 0,
            })),
            next_id: 0,
        }
    }

    fn tee(&self) -> std::sync::MutexGuard<'_, Tee> {
        self.tee.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether another reader can still replay the whole body.
    pub fn replayable(&self) -> bool {
        !self.tee().lost
    }

    /// Whether the whole body has been received and kept.
    pub fn complete(&self) -> bool {
        let t = self.tee();
        t.ended && !t.lost
    }

    /// A body for one attempt (the first is always given); it supersedes
    /// earlier readers.
    pub fn body(&mut self) -> Option<Body> {
        if self.next_id > 0 && !self.replayable() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.tee().current = id;
        Some(body::boxed(Reader {
            tee: self.tee.clone(),
            id,
            pos: 0,
        }))
    }
}

struct Reader {
    tee: Arc<Mutex<Tee>>,
    id: u64,
    pos: usize,
}

impl http_body::Body for Reader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let tee = self.tee.clone();
        let mut t = tee.lock().unwrap_or_else(|e| e.into_inner());
        if t.current != self.id {
            return Poll::Ready(Some(Err("request body taken over by a retry".into())));
        }
        if !t.lost && self.pos < t.frames.len() {
            self.pos += 1;
            return Poll::Ready(Some(Ok(t.frames[self.pos - 1].frame())));
        }
        if self.pos < t.seen {
            // Frames this reader never got were not kept.
            return Poll::Ready(Some(Err("request body too large to replay".into())));
        }
        if t.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut t.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                t.seen += 1;
                self.pos = t.seen;
                if !t.lost {
                    if let Some(d) = frame.data_ref() {
                        t.bytes += d.len() + CHUNK_OVERHEAD;
                        if t.bytes > t.limit {
                            t.lost = true;
                            t.frames = Vec::new();
                        } else {
                            // A copy: a slice of the connection's read
                            // buffer would pin the whole buffer.
                            t.frames.push(Recorded::Data(Bytes::copy_from_slice(d)));
                        }
                    } else if let Some(tr) = frame.trailers_ref() {
                        t.frames.push(Recorded::Trailers(tr.clone()));
                    }
                }
                if t.inner.is_end_stream() {
                    t.ended = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                t.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                t.lost = true;
                t.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        let t = self.tee.lock().unwrap_or_else(|e| e.into_inner());
        t.current == self.id && t.ended && self.pos >= t.seen
    }

    fn size_hint(&self) -> SizeHint {
        let t = self.tee.lock().unwrap_or_else(|e| e.into_inner());
        if self.pos == 0 && t.seen == 0 {
            t.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

/// Collects a body to bytes (tests).
pub async fn collect(b: Body) -> Result<Bytes, BoxError> {
    Ok(b.collect().await?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::StreamBody;

    #[tokio::test]
    async fn small_body_replays_large_one_streams_once() {
        let mut r = Replay::new(body::full("hello"), 10 + CHUNK_OVERHEAD);
        assert_eq!(collect(r.body().unwrap()).await.unwrap(), "hello");
        assert!(r.complete());
        assert_eq!(collect(r.body().unwrap()).await.unwrap(), "hello");
        let mut big = Replay::new(body::full("0123456789abc"), 10 + CHUNK_OVERHEAD);
        assert_eq!(collect(big.body().unwrap()).await.unwrap(), "0123456789abc");
        assert!(!big.replayable());
        assert!(big.body().is_none());
    }

    #[tokio::test]
    async fn first_attempt_streams_before_the_body_ends_and_retry_resumes() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Frame<Bytes>, BoxError>>();
        let stream = tokio_stream_from(rx);
        let mut r = Replay::new(body::boxed(StreamBody::new(stream)), 1000);
        let mut first = r.body().unwrap();
        tx.send(Ok(Frame::data(Bytes::from("a")))).unwrap();
        // The first frame arrives while the downstream is still open.
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "a");
        // A retry replays "a", then continues with what comes next.
        let second = r.body().unwrap();
        assert!(first.frame().await.unwrap().is_err(), "superseded");
        tx.send(Ok(Frame::data(Bytes::from("b")))).unwrap();
        drop(tx);
        assert_eq!(collect(second).await.unwrap(), "ab");
        assert!(r.complete());
    }

    #[tokio::test]
    async fn many_tiny_frames_count_their_overhead_against_the_limit() {
        // 1000 one-byte frames: 1000 payload bytes, far more held memory.
        let frames = (0..1000).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x"))));
        let body = body::boxed(StreamBody::new(futures::stream::iter(frames)));
        let mut r = Replay::new(body, 4096);
        assert_eq!(collect(r.body().unwrap()).await.unwrap().len(), 1000);
        assert!(!r.replayable(), "the copy would cost more than the limit");
        assert!(r.body().is_none());
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
    ) -> impl futures::Stream<Item = T> + Send {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
    }
}
