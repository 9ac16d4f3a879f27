//! [`HboneStream`]: one HTTP/2 CONNECT stream as a byte stream (tokio
//! `AsyncRead + AsyncWrite`), with HTTP/2 flow control honoured both ways.
//!
//! Reading releases receive window only for bytes handed to the caller, so a
//! slow reader stops the peer; writing waits for send capacity before
//! queueing, so a slow peer stops the writer. `poll_shutdown` sends
//! END_STREAM (half-close); a read returns EOF on the peer's END_STREAM.

use std::any::Any;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::{Reason, RecvStream, SendStream};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest chunk queued per write: bounds memory per stream while keeping
/// frames large (see [`crate::settings`]).
const MAX_WRITE: usize = 1 << 20;

/// An established HBONE tunnel.
pub struct HboneStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    pending: Bytes,
    read_eof: bool,
    write_closed: bool,
    peer_certificate: Option<CertificateDer<'static>>,
    // Held until drop: the client pool's accounting of this stream.
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl HboneStream {
    pub(crate) fn new(
        send: SendStream<Bytes>,
        recv: RecvStream,
        peer_certificate: Option<CertificateDer<'static>>,
        guard: Option<Box<dyn Any + Send + Sync>>,
    ) -> Self {
        HboneStream {
            send,
            recv,
            pending: Bytes::new(),
            read_eof: false,
            write_closed: false,
            peer_certificate,
            _guard: guard,
        }
    }

    /// The leaf certificate the other end presented on this connection.
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificate.as_ref()
    }

    /// Aborts the tunnel both ways with RST_STREAM(`reason`).
    pub fn reset(&mut self, reason: Reason) {
        self.send.send_reset(reason);
    }

    /// The error to report once the stream can no longer send.
    fn poll_send_error(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        Poll::Ready(match ready!(self.send.poll_reset(cx)) {
            Ok(Reason::NO_ERROR) | Ok(Reason::CANCEL) | Ok(Reason::STREAM_CLOSED) => {
                io::ErrorKind::BrokenPipe.into()
            }
            Ok(reason) => io::Error::new(io::ErrorKind::ConnectionReset, h2::Error::from(reason)),
            Err(e) => h2_to_io(e),
        })
    }
}

/// Keeps I/O errors as they are (they may carry a TLS alert) and maps
/// stream resets to `ConnectionReset`.
pub(crate) fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("h2 I/O error"));
    }
    if e.is_reset() {
        return io::Error::new(io::ErrorKind::ConnectionReset, e);
    }
    io::Error::other(e)
}

impl HboneStream {
    /// Makes [`Self::received`] non-empty with the next chunk the peer
    /// sent: `Ok(true)` when it holds bytes, `Ok(false)` at the peer's
    /// END_STREAM.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        while self.pending.is_empty() {
            if self.read_eof {
                return Poll::Ready(Ok(false));
            }
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => self.pending = data,
                None => self.read_eof = true,
                // A reset with NO_ERROR after the data means "done" (RFC 9113 §8.1).
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => self.read_eof = true,
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
            }
        }
        Poll::Ready(Ok(true))
    }

    /// Received bytes not yet consumed: read them in place (no copy) and
    /// [`Self::consume`] what was used.
    pub(crate) fn received(&self) -> &[u8] {
        &self.pending
    }

    /// Marks `n` received bytes used; only now may the peer send more in
    /// their place (flow control follows the consumer, not the socket).
    pub(crate) fn consume(&mut self, n: usize) {
        self.pending.advance(n);
        let _ = self.recv.flow_control().release_capacity(n);
    }

    /// Queues a prefix of `data` as DATA once the peer's window (and h2's
    /// send buffer) has room, splitting it off `data` without copying.
    /// Returns how many bytes were queued (at least one).
    pub(crate) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        let n = ready!(self.poll_send_capacity(cx, data.len()))?;
        let chunk = data.split_to(n);
        match self.send.send_data(chunk, false) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => self.poll_send_error(cx).map(Err),
        }
    }

    /// Waits until at least one of `wanted` bytes may be queued; returns how
    /// many may (at most `wanted` and [`MAX_WRITE`]).
    fn poll_send_capacity(
        &mut self,
        cx: &mut Context<'_>,
        wanted: usize,
    ) -> Poll<io::Result<usize>> {
        if self.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let wanted = wanted.min(MAX_WRITE);
        // Capacity is requested on top of what is already queued.
        self.send.reserve_capacity(wanted);
        let available = match self.send.capacity() {
            0 => match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(n)) => n,
                Some(Err(_)) | None => return self.poll_send_error(cx).map(Err),
            },
            n => n,
        };
        Poll::Ready(Ok(available.min(wanted)))
    }
}

impl AsyncRead for HboneStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if ready!(this.poll_fill(cx))? {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.consume(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HboneStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(this.poll_send_capacity(cx, buf.len()))?;
        match this
            .send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
        {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => this.poll_send_error(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued data is written by the connection task; nothing to wait for.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Ok(()));
        }
        // Return unused capacity to the connection.
        this.send.reserve_capacity(0);
        match this.send.send_data(Bytes::new(), true) {
            Ok(()) => {
                this.write_closed = true;
                Poll::Ready(Ok(()))
            }
            Err(_) => this.poll_send_error(cx).map(Err),
        }
    }
}

impl fmt::Debug for HboneStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HboneStream")
            .field("stream_id", &self.send.stream_id())
            .field("read_eof", &self.read_eof)
            .field("write_closed", &self.write_closed)
            .finish_non_exhaustive()
    }
}
