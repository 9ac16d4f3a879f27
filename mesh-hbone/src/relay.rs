//! [`relay`]: moves bytes between a tunnel and a byte stream (a pod's
//! socket) in both directions until both are done, without the
//! intermediate buffer a generic `copy_bidirectional` copies through.
//!
//! Towards the tunnel, each read from the stream lands in a `BytesMut`
//! whose filled part is handed to h2 as the DATA payload itself (split
//! off, not copied); the rest of the allocation takes the next read, and
//! once h2 has written and dropped earlier payloads the allocation is
//! reused from its start. From the tunnel, each DATA payload h2 received
//! is written to the stream straight from h2's buffer, and its flow
//! control window is released only once written.
//!
//! Reads start small (an interactive connection keeps a small buffer) and
//! double each time one fills the space it was given, up to
//! [`MAX_READ`]: a bulk transfer reads, frames and encrypts in large
//! pieces.
//!
//! Semantics match `tokio::io::copy_bidirectional`: EOF on one side shuts
//! down the other side's write half (END_STREAM on the tunnel), the relay
//! ends when both directions have, and the first error ends it.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::stream::HboneStream;

/// First read size from the stream.
const FIRST_READ: usize = 16 << 10;
/// Largest read size from the stream by default (and so the largest DATA
/// frame a relay produces).
pub const MAX_READ: usize = 256 << 10;

/// Relays between `stream` and `tunnel` until both directions finished:
/// `(stream → tunnel, tunnel → stream)` bytes, or the first error. Reads
/// from `stream` grow up to [`MAX_READ`].
pub async fn relay<S>(stream: &mut S, tunnel: &mut HboneStream) -> io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    relay_with(stream, tunnel, MAX_READ).await
}

/// [`relay`] with reads from `stream` growing up to `max_read` bytes.
pub(crate) async fn relay_with<S>(
    stream: &mut S,
    tunnel: &mut HboneStream,
    max_read: usize,
) -> io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut out = ToTunnel::new(max_read);
    let mut back = FromTunnel::default();
    poll_fn(|cx| {
        let out_done = out.poll(cx, stream, tunnel)?.is_ready();
        let back_done = back.poll(cx, stream, tunnel)?.is_ready();
        if out_done && back_done {
            Poll::Ready(Ok((out.moved, back.moved)))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Stream → tunnel.
struct ToTunnel {
    buf: BytesMut,
    /// Read but not yet queued on the tunnel (its window was full).
    queued: Bytes,
    read_size: usize,
    max_read: usize,
    moved: u64,
    eof: bool,
    done: bool,
}

impl ToTunnel {
    fn new(max_read: usize) -> Self {
        let max_read = max_read.max(1);
        ToTunnel {
            buf: BytesMut::new(),
            queued: Bytes::new(),
            read_size: FIRST_READ.min(max_read),
            max_read,
            moved: 0,
            eof: false,
            done: false,
        }
    }

    fn poll<S>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        tunnel: &mut HboneStream,
    ) -> Poll<io::Result<()>>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if !self.queued.is_empty() {
                let n = ready!(tunnel.poll_send(cx, &mut self.queued))?;
                self.moved += n as u64;
                continue;
            }
            if self.eof {
                ready!(Pin::new(&mut *tunnel).poll_shutdown(cx))?;
                self.done = true;
                continue;
            }
            // Keep reading into what is left of the allocation until a
            // quarter of a read's worth remains.
            let spare = self.buf.capacity() - self.buf.len();
            if spare < self.read_size / 4 {
                self.buf.reserve(self.read_size);
            }
            let offered = self.buf.capacity() - self.buf.len();
            let n = ready!(pin!(stream.read_buf(&mut self.buf)).poll(cx))?;
            if n == 0 {
                self.eof = true;
                continue;
            }
            if n == offered && self.read_size < self.max_read {
                self.read_size = (self.read_size * 2).min(self.max_read);
            }
            self.queued = self.buf.split().freeze();
        }
    }
}

/// Tunnel → stream.
#[derive(Default)]
struct FromTunnel {
    moved: u64,
    /// Written since the stream was last flushed.
    need_flush: bool,
    done: bool,
}

impl FromTunnel {
    fn poll<S>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        tunnel: &mut HboneStream,
    ) -> Poll<io::Result<()>>
    where
        S: AsyncWrite + Unpin + ?Sized,
    {
        let mut stream = Pin::new(stream);
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            let more = match tunnel.poll_fill(cx) {
                Poll::Ready(more) => more?,
                Poll::Pending => {
                    // Nothing more for now: push out what a buffering
                    // stream holds.
                    if self.need_flush {
                        ready!(stream.as_mut().poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
            };
            if !more {
                if self.need_flush {
                    ready!(stream.as_mut().poll_flush(cx))?;
                    self.need_flush = false;
                }
                ready!(stream.as_mut().poll_shutdown(cx))?;
                self.done = true;
                continue;
            }
            let n = ready!(stream.as_mut().poll_write(cx, tunnel.received()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            tunnel.consume(n);
            self.moved += n as u64;
            self.need_flush = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use h2::RecvStream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::settings;

    /// A tunnel over plain HTTP/2 on an in-memory pipe: the relay's
    /// `HboneStream` and the far end's raw h2 stream halves.
    async fn tunnel_pair() -> (HboneStream, h2::SendStream<Bytes>, RecvStream) {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            let mut conn = settings::server_builder(10)
                .handshake::<_, Bytes>(server_io)
                .await
                .unwrap();
            let (request, mut respond) = conn.accept().await.unwrap().unwrap();
            let send = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            tokio::spawn(async move { while conn.accept().await.is_some() {} });
            (send, request.into_body())
        });
        let (send_request, conn) = settings::client_builder()
            .handshake::<_, Bytes>(client_io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut send_request = send_request.ready().await.unwrap();
        let request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri("10.0.0.1:80")
            .body(())
            .unwrap();
        let (response, send) = send_request.send_request(request, false).unwrap();
        let (far_send, far_recv) = server.await.unwrap();
        let response = response.await.unwrap();
        let tunnel = HboneStream::new(send, response.into_body(), None, None);
        (tunnel, far_send, far_recv)
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Reads the far end's stream to EOF, releasing window as it goes:
    /// the bytes and the largest DATA payload seen.
    async fn drain(mut recv: RecvStream) -> (Vec<u8>, usize) {
        let (mut got, mut largest) = (Vec::new(), 0);
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.unwrap();
            largest = largest.max(chunk.len());
            got.extend_from_slice(&chunk);
            recv.flow_control().release_capacity(chunk.len()).unwrap();
        }
        (got, largest)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn moves_both_ways_half_closes_and_grows_its_reads() {
        let (mut tunnel, mut far_send, far_recv) = tunnel_pair().await;
        let (mut pod, mut agent_side) = tokio::io::duplex(1 << 20);
        let up = payload(8 << 20);
        let down = payload(3 << 20);

        let relay = tokio::spawn(async move { relay(&mut agent_side, &mut tunnel).await });
        let far_reader = tokio::spawn(drain(far_recv));
        let to_send = Bytes::from(down.clone());
        let far_writer = tokio::spawn(async move {
            far_send.send_data(to_send, true).unwrap();
            // Keep the stream alive until h2 has sent it all.
            std::future::poll_fn(|cx| far_send.poll_reset(cx))
                .await
                .ok();
        });
        let (mut pod_rd, mut pod_wr) = tokio::io::split(&mut pod);
        let written = async {
            pod_wr.write_all(&up).await.unwrap();
            pod_wr.shutdown().await.unwrap();
        };
        let read = async {
            let mut got = Vec::new();
            pod_rd.read_to_end(&mut got).await.unwrap();
            got
        };
        let ((), got_down) = tokio::join!(written, read);

        let moved = relay.await.unwrap().unwrap();
        let (got_up, largest) = far_reader.await.unwrap();
        far_writer.abort();
        assert_eq!(moved, (up.len() as u64, down.len() as u64));
        assert!(got_up == up, "bytes towards the tunnel differ");
        assert!(got_down == down, "bytes from the tunnel differ");
        // Reads of a bulk transfer grow past the first read size.
        assert!(largest > FIRST_READ, "largest DATA frame {largest} bytes");
        assert!(largest <= MAX_READ, "largest DATA frame {largest} bytes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reset_from_the_peer_ends_the_relay_with_an_error() {
        let (mut tunnel, mut far_send, _far_recv) = tunnel_pair().await;
        let (_pod, mut agent_side): (DuplexStream, DuplexStream) = tokio::io::duplex(1024);
        let relay = tokio::spawn(async move { relay(&mut agent_side, &mut tunnel).await });
        far_send.send_reset(h2::Reason::INTERNAL_ERROR);
        let error = relay.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
    }
}
