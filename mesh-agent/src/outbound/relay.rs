//! Moving bytes between the pod's connection and the upstream one.
//!
//! Each direction adapts to its traffic:
//! - small messages (request/response) take the cheapest path: one `read`
//!   into a small buffer and one `write` — tokio knows a short read drained
//!   the socket, so no extra `EAGAIN` read is made;
//! - once a read fills the buffer (a bulk transfer), the direction switches
//!   to splice(2) (socket → pipe → socket): bytes no longer enter userspace;
//!   it falls back to copying when splices come back small again.
//!
//! A direction ends at EOF by shutting down writes on the other socket
//! (half-close); an error in either direction ends both. Backpressure is the
//! sockets' own: at most one buffer or one pipe of bytes is in flight.
//!
//! Each chunk moved is also added to the connection's [`LiveBytes`] (one
//! relaxed atomic add per chunk), which the metrics read while it is open.
use std::{
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::atomic::{AtomicU64, Ordering},
};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::{
        tcp::{ReadHalf, WriteHalf},
        TcpStream,
    },
};

use crate::metrics::LiveBytes;

/// Bytes buffered in userspace per direction when copying.
const COPY_BUFFER: usize = 4096;
const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// Relays until both directions have ended. Returns bytes (a → b, b → a);
/// `live` counts them as they move (`request`: a → b).
pub async fn relay(
    a: &mut TcpStream,
    b: &mut TcpStream,
    pipe_size: usize,
    live: &LiveBytes,
) -> io::Result<(u64, u64)> {
    let (ar, aw) = a.split();
    let (br, bw) = b.split();
    tokio::try_join!(
        one_way(ar, bw, pipe_size, &live.request),
        one_way(br, aw, pipe_size, &live.response)
    )
}

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new(size: usize) -> io::Result<Self> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        // Larger pipes mean fewer syscalls per byte; the kernel may cap the
        // size (fs.pipe-max-size), which is fine: splice works with any size.
        let _ = fcntl(w.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size as libc::c_int));
        Ok(Self { r, w })
    }
}

async fn one_way(
    mut src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    pipe_size: usize,
    moved: &AtomicU64,
) -> io::Result<u64> {
    let mut buf = [0u8; COPY_BUFFER];
    let mut pipe: Option<Pipe> = None;
    let mut splicing = false;
    let mut total = 0u64;
    loop {
        let n = if splicing {
            let pipe = match &mut pipe {
                Some(p) => p,
                None => pipe.insert(Pipe::new(pipe_size)?),
            };
            let n = splice_once(src.as_ref(), dst.as_ref(), pipe, pipe_size).await?;
            // Small splices again: the bulk phase is over.
            splicing = n >= COPY_BUFFER;
            n
        } else {
            let n = src.read(&mut buf).await?;
            dst.write_all(&buf[..n]).await?;
            splicing = n == buf.len();
            n
        };
        if n == 0 {
            return match dst.shutdown().await {
                Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
                _ => Ok(total),
            };
        }
        total += n as u64;
        moved.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One socket → pipe → socket round; returns the bytes moved (0 at EOF).
async fn splice_once(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    max: usize,
) -> io::Result<usize> {
    // The pipe is empty here, so EAGAIN can only mean "socket empty".
    let n = loop {
        src.readable().await?;
        match src.try_io(Interest::READABLE, || {
            splice(src.as_fd(), None, pipe.w.as_fd(), None, max, FLAGS).map_err(io::Error::from)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    let mut in_pipe = n;
    while in_pipe > 0 {
        dst.writable().await?;
        match dst.try_io(Interest::WRITABLE, || {
            splice(pipe.r.as_fd(), None, dst.as_fd(), None, in_pipe, FLAGS).map_err(io::Error::from)
        }) {
            Ok(m) => in_pipe -= m,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use crate::metrics::LiveBytes;

    /// client ⇄ [relay] ⇄ server over loopback; returns the two outer ends.
    async fn relayed() -> (
        TcpStream,
        TcpStream,
        std::sync::Arc<LiveBytes>,
        tokio::task::JoinHandle<(u64, u64)>,
    ) {
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(front.local_addr().unwrap())
            .await
            .unwrap();
        let (mut accepted, _) = front.accept().await.unwrap();
        let mut upstream = TcpStream::connect(back.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = back.accept().await.unwrap();
        let live = std::sync::Arc::new(LiveBytes::default());
        let counted = std::sync::Arc::clone(&live);
        let task = tokio::spawn(async move {
            super::relay(&mut accepted, &mut upstream, 65536, &counted)
                .await
                .unwrap()
        });
        (client, server, live, task)
    }

    #[tokio::test]
    async fn small_then_bulk_then_half_close_arrive_intact() {
        // A relay that loses the half-close would hang: fail instead.
        tokio::time::timeout(std::time::Duration::from_secs(30), exchange())
            .await
            .expect("relay stalled");
    }

    async fn exchange() {
        let (mut client, mut server, live, task) = relayed().await;
        // Small messages (copy path), answered one by one.
        for i in 0..50u8 {
            client.write_all(&[i; 3]).await.unwrap();
            let mut got = [0u8; 3];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [i; 3]);
            server.write_all(&[i]).await.unwrap();
            client.read_exact(&mut got[..1]).await.unwrap();
        }
        // Counted while open (the relay adds right after each write, so
        // the last add may trail the peer's read by a moment).
        while live.load() != (150, 50) {
            let (request, response) = live.load();
            assert!(request <= 150 && response <= 50, "over-counted");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Bulk (switches to splice), then half-close from the client.
        let bulk: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let writer = {
            let bulk = bulk.clone();
            tokio::spawn(async move {
                client.write_all(&bulk).await.unwrap();
                client.shutdown().await.unwrap();
                client
            })
        };
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        assert!(received == bulk, "bulk bytes altered or lost");
        // The other direction still works after the half-close.
        server.write_all(b"after half-close").await.unwrap();
        server.shutdown().await.unwrap();
        let mut client = writer.await.unwrap();
        let mut tail = Vec::new();
        client.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, b"after half-close");
        let (up, down) = task.await.unwrap();
        assert_eq!(up, 150 + bulk.len() as u64);
        assert_eq!(down, 50 + 16);
        assert_eq!(live.load(), (up, down), "live counts match the totals");
    }
}
