//! Zero-copy proxying with splice(2): socket → pipe → socket, so payload
//! bytes never enter userspace. One pipe per direction; each direction ends
//! at EOF by shutting down writes on the other socket (half-close), and an
//! error in either direction ends both.
use std::{
    io,
    os::fd::{AsFd, OwnedFd},
};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::{io::Interest, net::TcpStream};

/// Bytes moved (a → b, b → a).
pub async fn splice_bidirectional(
    a: &TcpStream,
    b: &TcpStream,
    pipe_size: usize,
) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a, b, pipe_size), one_way(b, a, pipe_size))
}

fn pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // Larger pipes mean fewer syscalls per byte; the kernel may cap the size
    // (fs.pipe-max-size), which is fine: splice works with any size.
    let _ = fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&w),
        FcntlArg::F_SETPIPE_SZ(size as libc::c_int),
    );
    Ok((r, w))
}

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

async fn one_way(src: &TcpStream, dst: &TcpStream, pipe_size: usize) -> io::Result<u64> {
    let (pipe_r, pipe_w) = pipe(pipe_size)?;
    let mut total = 0u64;
    loop {
        // The pipe is empty here, so EAGAIN can only mean "socket empty".
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                splice(src.as_fd(), None, pipe_w.as_fd(), None, pipe_size, FLAGS)
                    .map_err(io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // Half-close: the other side still may send.
            match shutdown_write(dst) {
                Ok(()) => return Ok(total),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(total),
                Err(e) => return Err(e),
            }
        }
        let mut in_pipe = n;
        while in_pipe > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe_r.as_fd(), None, dst.as_fd(), None, in_pipe, FLAGS)
                    .map_err(io::Error::from)
            }) {
                Ok(m) => {
                    in_pipe -= m;
                    total += m as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// `shutdown(SHUT_WR)` through a shared reference (tokio's needs `&mut`).
fn shutdown_write(stream: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    nix::sys::socket::shutdown(stream.as_raw_fd(), nix::sys::socket::Shutdown::Write)
        .map_err(io::Error::from)
}
