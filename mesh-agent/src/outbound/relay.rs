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
use std::{
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::{
        tcp::{ReadHalf, WriteHalf},
        TcpStream,
    },
};

/// Bytes buffered in userspace per direction when copying.
const COPY_BUFFER: usize = 4096;
const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

/// Relays until both directions have ended. Returns bytes (a → b, b → a).
pub async fn relay(
    a: &mut TcpStream,
    b: &mut TcpStream,
    pipe_size: usize,
) -> io::Result<(u64, u64)> {
    let (ar, aw) = a.split();
    let (br, bw) = b.split();
    tokio::try_join!(one_way(ar, bw, pipe_size), one_way(br, aw, pipe_size))
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
