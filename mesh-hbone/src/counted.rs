//! Byte counts of a relayed connection that can be read while it is still
//! open: a [`Counted`] stream adds every read or write that moved bytes to
//! the connection's [`LiveBytes`] (one relaxed atomic add per call), so
//! metrics can report a long connection's bytes before it closes. The
//! HBONE server counts each tunnel's upstream this way
//! ([`crate::ConnectRequest::live`]); the node agent counts its outbound
//! copies into the same type.
use std::{
    io,
    ops::Deref,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a relay has moved so far on one open connection (relaxed: only
/// the totals matter, read at scrape and at close).
#[derive(Debug, Default)]
pub struct LiveBytes {
    /// Source → destination.
    pub request: AtomicU64,
    /// Destination → source.
    pub response: AtomicU64,
}

impl LiveBytes {
    /// `(request, response)` moved so far.
    pub fn load(&self) -> (u64, u64) {
        (
            self.request.load(Ordering::Relaxed),
            self.response.load(Ordering::Relaxed),
        )
    }
}

/// Which end of the connection a [`Counted`] stream faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client: what is read from it is the request, what is written
    /// to it the response.
    Source,
    /// The server: what is written to it is the request, what is read
    /// from it the response.
    Destination,
}

/// A stream that adds the bytes moved through it to a [`LiveBytes`]
/// (borrowed or shared: any `L` that derefs to one).
#[derive(Debug)]
pub struct Counted<S, L> {
    inner: S,
    live: L,
    end: End,
}

impl<S, L: Deref<Target = LiveBytes>> Counted<S, L> {
    /// Counts `inner`, the connection's `end`, into `live`.
    pub fn new(inner: S, end: End, live: L) -> Self {
        Counted { inner, live, end }
    }

    /// What has been counted so far.
    pub fn live(&self) -> &LiveBytes {
        &self.live
    }

    fn read_counter(&self) -> &AtomicU64 {
        match self.end {
            End::Source => &self.live.request,
            End::Destination => &self.live.response,
        }
    }

    fn write_counter(&self) -> &AtomicU64 {
        match self.end {
            End::Source => &self.live.response,
            End::Destination => &self.live.request,
        }
    }
}

impl<S, L> AsyncRead for Counted<S, L>
where
    S: AsyncRead + Unpin,
    L: Deref<Target = LiveBytes> + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read_counter().fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S, L> AsyncWrite for Counted<S, L>
where
    S: AsyncWrite + Unpin,
    L: Deref<Target = LiveBytes> + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.write_counter().fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Writes `hello` from the far end, reads it through `counted`, writes
    /// `back` through it and reads that at the far end.
    async fn exchange<L: Deref<Target = LiveBytes> + Unpin>(
        far: tokio::io::DuplexStream,
        counted: &mut Counted<tokio::io::DuplexStream, L>,
    ) {
        let (mut far_r, mut far_w) = tokio::io::split(far);
        far_w.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        counted.read_exact(&mut got).await.unwrap();
        counted.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        far_r.read_exact(&mut back).await.unwrap();
        assert_eq!((&got, &back), (b"hello", b"back"));
    }

    #[tokio::test]
    async fn a_source_counts_reads_as_request_and_writes_as_response() {
        let (pod, agent_side) = tokio::io::duplex(1024);
        let live = LiveBytes::default();
        let mut counted = Counted::new(agent_side, End::Source, &live);
        exchange(pod, &mut counted).await;
        assert_eq!(live.load(), (5, 4));
    }

    #[tokio::test]
    async fn a_destination_counts_writes_as_request_and_reads_as_response() {
        let (pod, agent_side) = tokio::io::duplex(1024);
        let live = Arc::new(LiveBytes::default());
        let mut counted = Counted::new(agent_side, End::Destination, Arc::clone(&live));
        exchange(pod, &mut counted).await;
        // Seen through the shared handle while the stream still exists.
        assert_eq!(live.load(), (4, 5));
        assert_eq!(counted.live().load(), (4, 5));
    }
}
