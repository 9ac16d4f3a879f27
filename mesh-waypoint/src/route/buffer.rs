//! The request body, held for replay (retries, mirrors) when it fits the
//! limit; a larger body streams through once and disables retries.
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};

use crate::body::{self, Body, BoxError};

pub enum Replay {
    /// The whole body (and its trailers, if any); cloned per attempt.
    Buffered(Bytes, Option<http::HeaderMap>),
    /// Too large to hold: what was read so far plus the rest, usable once.
    Streaming(Option<Body>),
}

impl Replay {
    /// Reads `b` up to `limit` bytes.
    pub async fn read(b: Body, limit: usize) -> Result<Replay, BoxError> {
        let mut stream = BodyStream::new(b);
        let mut buf = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = stream.next().await {
            let frame = frame?;
            match frame.into_data() {
                Ok(data) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > limit {
                        let head =
                            futures::stream::iter([Ok::<_, BoxError>(Frame::data(buf.freeze()))]);
                        let rest = head.chain(stream);
                        return Ok(Replay::Streaming(Some(body::boxed(StreamBody::new(rest)))));
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        Ok(Replay::Buffered(buf.freeze(), trailers))
    }

    pub fn replayable(&self) -> bool {
        matches!(self, Replay::Buffered(..))
    }

    /// A body for one attempt; None once a streaming body was used.
    pub fn body(&mut self) -> Option<Body> {
        match self {
            Replay::Buffered(b, None) => Some(body::full(b.clone())),
            Replay::Buffered(b, Some(t)) => {
                let frames = [
                    Ok::<_, BoxError>(Frame::data(b.clone())),
                    Ok(Frame::trailers(t.clone())),
                ];
                Some(body::boxed(StreamBody::new(futures::stream::iter(frames))))
            }
            Replay::Streaming(b) => b.take(),
        }
    }
}

/// Collects a body to bytes (tests, mirrors' drains).
pub async fn collect(b: Body) -> Result<Bytes, BoxError> {
    Ok(b.collect().await?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_body_replays_large_streams_once() {
        let mut r = Replay::read(body::full("hello"), 10).await.unwrap();
        assert!(r.replayable());
        assert_eq!(collect(r.body().unwrap()).await.unwrap(), "hello");
        assert_eq!(collect(r.body().unwrap()).await.unwrap(), "hello");
        let mut big = Replay::read(body::full("0123456789abc"), 10).await.unwrap();
        assert!(!big.replayable());
        assert_eq!(collect(big.body().unwrap()).await.unwrap(), "0123456789abc");
        assert!(big.body().is_none());
    }
}
