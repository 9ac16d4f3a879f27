//! Forwarding a query the mesh does not answer to the upstream resolver,
//! byte for byte, and relaying its answer unchanged: over UDP from a fresh
//! socket per query (a random source port, answers accepted only from the
//! upstream and only with the query's id), over TCP with the two-byte
//! length prefix. Every exchange has a deadline.
use std::{io, net::SocketAddr, time::Duration};

use nix::sys::socket::{setsockopt, sockopt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, UdpSocket},
};

/// The largest DNS message over UDP (the IP payload limit).
pub const MAX_UDP_ANSWER: usize = 65_535;

/// Where and how queries go upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// How long one exchange may take.
    pub timeout: Duration,
    /// SO_MARK on the agent's sockets (never captured).
    pub mark: u32,
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "upstream DNS did not answer in time",
    )
}

impl Upstream {
    /// Sends `query` over UDP and returns the upstream's answer as received.
    pub async fn udp(&self, query: &[u8]) -> io::Result<Vec<u8>> {
        let bind: SocketAddr = if self.addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await?;
        if self.mark != 0 {
            setsockopt(&socket, sockopt::Mark, &self.mark)?;
        }
        socket.connect(self.addr).await?;
        socket.send(query).await?;
        let mut buf = vec![0u8; MAX_UDP_ANSWER];
        let exchange = async {
            loop {
                let n = socket.recv(&mut buf).await?;
                // A datagram for another query (or garbage) is not the answer.
                if n >= 2 && buf[..2] == query[..2] {
                    return Ok::<usize, io::Error>(n);
                }
            }
        };
        let n = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| timed_out())??;
        buf.truncate(n);
        Ok(buf)
    }

    /// Sends `query` over TCP and returns the upstream's answer (without
    /// the length prefix).
    pub async fn tcp(&self, query: &[u8]) -> io::Result<Vec<u8>> {
        let exchange = async {
            let socket = if self.addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if self.mark != 0 {
                setsockopt(&socket, sockopt::Mark, &self.mark)?;
            }
            let mut stream = socket.connect(self.addr).await?;
            let len = u16::try_from(query.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
            let mut framed = Vec::with_capacity(query.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(query);
            stream.write_all(&framed).await?;
            let len = stream.read_u16().await?;
            let mut answer = vec![0u8; usize::from(len)];
            stream.read_exact(&mut answer).await?;
            Ok::<Vec<u8>, io::Error>(answer)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| timed_out())?
    }
}
