//! A pod's connection that counts the bytes copied through it into the
//! connection's [`LiveBytes`] (one relaxed atomic add per read or write
//! call that moved bytes), for paths that copy with tokio rather than
//! relay.rs (HBONE).
use std::{
    io,
    pin::Pin,
    sync::atomic::Ordering,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::metrics::LiveBytes;

/// The client side of a connection: what is read from it is the request,
/// what is written to it the response.
pub struct Counted<'a, S> {
    pub inner: S,
    pub live: &'a LiveBytes,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.live.request.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.live.response.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reads_count_as_request_and_writes_as_response() {
        let (pod, agent_side) = tokio::io::duplex(1024);
        let live = LiveBytes::default();
        let mut counted = Counted {
            inner: agent_side,
            live: &live,
        };
        let (mut pod_r, mut pod_w) = tokio::io::split(pod);
        pod_w.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        counted.read_exact(&mut got).await.unwrap();
        counted.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        pod_r.read_exact(&mut back).await.unwrap();
        assert_eq!((&got, &back), (b"hello", b"back"));
        assert_eq!(live.load(), (5, 4));
    }
}
