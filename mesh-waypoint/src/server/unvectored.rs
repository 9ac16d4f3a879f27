//! The downstream connection as hyper's server sees it: its writes are
//! not vectored. h2 (`FramedWrite`) then copies DATA frames of up to
//! 1 KiB into its 16 KiB write buffer, so the responses of many streams
//! leave in one `write`; with vectored writes it chains every frame
//! over 256 bytes as its own `writev`. HTTP/1.1 copies body into the
//! head buffer (hyper's flattened strategy): one `write` per response
//! either way.
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Unvectored<I>(pub I);

impl<I: AsyncRead + Unpin> AsyncRead for Unvectored<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

// `is_write_vectored` and `poll_write_vectored` keep their defaults: not
// vectored.
impl<I: AsyncWrite + Unpin> AsyncWrite for Unvectored<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn passes_bytes_through_and_is_not_vectored() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = Unvectored(a);
        assert!(!a.is_write_vectored());
        a.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        b.write_all(b"pong").await.unwrap();
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
}
