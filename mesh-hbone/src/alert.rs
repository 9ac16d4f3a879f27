//! Remembers the TLS alert that ended a client connection.
//!
//! With TLS 1.3 the server judges the client certificate after the client
//! considers the handshake done, so a rejection arrives as an alert on the
//! first read, inside h2, which flattens I/O errors to strings. Watching the
//! TLS stream underneath h2 keeps the alert as data, so the client can say
//! "the peer rejected us" without parsing messages.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::{classify_io, TlsFailure};

/// The last TLS alert received on one connection.
#[derive(Debug, Default)]
pub(crate) struct AlertSlot(Mutex<Option<String>>);

impl AlertSlot {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn observe<T>(&self, result: &Poll<io::Result<T>>) {
        if let Poll::Ready(Err(e)) = result {
            if let Some(TlsFailure::Alert(alert)) = classify_io(e) {
                *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(alert);
            }
        }
    }
}

/// Passes I/O through, recording TLS alerts in the slot.
pub(crate) struct AlertWatch<T> {
    inner: T,
    slot: Arc<AlertSlot>,
}

impl<T> AlertWatch<T> {
    pub fn new(inner: T, slot: Arc<AlertSlot>) -> Self {
        AlertWatch { inner, slot }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AlertWatch<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.slot.observe(&r);
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AlertWatch<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.slot.observe(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.slot.observe(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.slot.observe(&r);
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.slot.observe(&r);
        r
    }
}
