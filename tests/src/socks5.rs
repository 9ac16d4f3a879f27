//! A SOCKS5 client (RFC 1928): CONNECT without authentication, the subset
//! ztunnel's SOCKS5 listener serves. It is how a pod without iptables
//! reaches a ztunnel's outbound path in tests and benchmarks.
//!
//! The greeting and the CONNECT request go out in one write and both
//! answers are read after it, so the handshake costs one round trip to the
//! proxy. The proxy may answer before it has reached the target (ztunnel
//! does): the target's connection time then shows up in the first
//! exchange, not in the handshake.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// What a SOCKS5 handshake failed on.
#[derive(Debug, thiserror::Error)]
pub enum Socks5Error {
    #[error("SOCKS5 proxy {proxy}: {source}")]
    Io {
        proxy: SocketAddr,
        source: std::io::Error,
    },
    #[error("SOCKS5 proxy {proxy} chose authentication method {method:#04x}, not 0 (none)")]
    Method { proxy: SocketAddr, method: u8 },
    #[error("SOCKS5 proxy {proxy} answered CONNECT {target} with reply code {code}")]
    Refused {
        proxy: SocketAddr,
        target: SocketAddr,
        code: u8,
    },
    #[error("SOCKS5 proxy {proxy} answered with version {version}, not 5")]
    Version { proxy: SocketAddr, version: u8 },
}

/// The greeting (one method: no authentication) followed by a CONNECT
/// request for `target`.
pub fn request(target: SocketAddr) -> Vec<u8> {
    let mut out = vec![5, 1, 0, 5, 1, 0];
    match target {
        SocketAddr::V4(a) => {
            out.push(1);
            out.extend(a.ip().octets());
        }
        SocketAddr::V6(a) => {
            out.push(4);
            out.extend(a.ip().octets());
        }
    }
    out.extend(target.port().to_be_bytes());
    out
}

/// Runs the handshake on `conn`, a connection to the proxy `proxy`; on
/// success `conn` carries the workload's bytes to `target`.
pub fn handshake(
    conn: &mut TcpStream,
    proxy: SocketAddr,
    target: SocketAddr,
) -> Result<(), Socks5Error> {
    let io = |source| Socks5Error::Io { proxy, source };
    conn.write_all(&request(target)).map_err(io)?;
    let mut choice = [0u8; 2];
    conn.read_exact(&mut choice).map_err(io)?;
    if choice[0] != 5 {
        return Err(Socks5Error::Version {
            proxy,
            version: choice[0],
        });
    }
    if choice[1] != 0 {
        return Err(Socks5Error::Method {
            proxy,
            method: choice[1],
        });
    }
    // VER REP RSV ATYP, then the bound address (4 or 16 bytes) and port.
    let mut head = [0u8; 4];
    conn.read_exact(&mut head).map_err(io)?;
    if head[1] != 0 {
        return Err(Socks5Error::Refused {
            proxy,
            target,
            code: head[1],
        });
    }
    let rest = match head[3] {
        4 => 16 + 2,
        _ => 4 + 2,
    };
    let mut bound = [0u8; 18];
    conn.read_exact(&mut bound[..rest]).map_err(io)?;
    Ok(())
}

/// A connection to `target` through the SOCKS5 proxy at `proxy`.
pub fn connect(
    proxy: SocketAddr,
    target: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, Socks5Error> {
    let mut conn = TcpStream::connect_timeout(&proxy, timeout)
        .map_err(|source| Socks5Error::Io { proxy, source })?;
    conn.set_nodelay(true)
        .map_err(|source| Socks5Error::Io { proxy, source })?;
    handshake(&mut conn, proxy, target)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_greeting_then_connect() {
        let v4 = request("10.244.2.3:9080".parse().unwrap());
        assert_eq!(v4, [5, 1, 0, 5, 1, 0, 1, 10, 244, 2, 3, 0x23, 0x78]);
        let v6 = request("[fd00::2]:80".parse().unwrap());
        assert_eq!(&v6[..7], &[5, 1, 0, 5, 1, 0, 4]);
        assert_eq!(v6.len(), 7 + 16 + 2);
        assert_eq!(&v6[23..], &[0, 80]);
    }
}
