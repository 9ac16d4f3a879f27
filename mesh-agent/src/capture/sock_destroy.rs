//! Closing a TCP connection the agent does not hold: `SOCK_DESTROY` over
//! `NETLINK_SOCK_DIAG` (linux/sock_diag.h, linux/inet_diag.h), sent on a
//! sock_diag socket made inside the namespace of the socket to destroy
//! (netns_sockets.rs). The kernel aborts the socket (`tcp_abort`): the
//! application gets `ECONNABORTED`, the peer a reset. Needs
//! `CONFIG_INET_DIAG_DESTROY` and `CAP_NET_ADMIN`, both true for the agent.
//!
//! Written by hand: the message is two fixed structures, and the netlink
//! crates do not offer the destroy request.
use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd, OwnedFd},
};

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// `SOCK_DESTROY` (linux/sock_diag.h).
const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLMSG_ERROR: u16 = 2;
const IPPROTO_TCP: u8 = 6;
/// Every TCP state.
const ALL_STATES: u32 = u32::MAX;
/// `INET_DIAG_NOCOOKIE`: match by address, not by socket cookie.
const NO_COOKIE: u32 = u32::MAX;

/// `struct nlmsghdr` + `struct inet_diag_req_v2`, in native byte order
/// except the ports (network order).
const REQUEST_LEN: usize = 72;

/// An address as inet_diag wants it: IPv4 in the first four bytes.
fn diag_addr(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

fn request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Vec<u8> {
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let mut m = Vec::with_capacity(REQUEST_LEN);
    // nlmsghdr
    m.extend_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DESTROY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states
    m.extend_from_slice(&[family as u8, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&ALL_STATES.to_ne_bytes());
    // inet_diag_sockid
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&remote.port().to_be_bytes());
    m.extend_from_slice(&diag_addr(local.ip()));
    m.extend_from_slice(&diag_addr(remote.ip()));
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m
}

/// A new sock_diag socket in the calling thread's namespace.
pub fn diag_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?)
}

/// Aborts the TCP socket `local` → `remote` of the namespace `diag` was
/// made in. `Ok(false)`: no such socket (it had closed already).
pub fn destroy(diag: &OwnedFd, local: SocketAddr, remote: SocketAddr) -> io::Result<bool> {
    // Both ends must be of one family; a v4-mapped IPv6 local address
    // means an IPv4 connection on a dual-stack socket.
    let (local, remote) = (unmapped(local), unmapped(remote));
    let req = request(local, remote, 1);
    sendto(
        diag.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut answer = [0u8; 512];
    let got = recv(diag.as_raw_fd(), &mut answer, MsgFlags::empty())?;
    // nlmsghdr (16 bytes), then for NLMSG_ERROR an i32 error (0: done).
    if got < 20 || u16::from_ne_bytes([answer[4], answer[5]]) != NLMSG_ERROR {
        return Err(io::Error::other("unexpected sock_diag answer"));
    }
    let errno = -i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]);
    match errno {
        0 => Ok(true),
        libc::ENOENT => Ok(false),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    #[test]
    fn request_has_the_kernel_layout() {
        // nlmsghdr 16 + inet_diag_req_v2 56.
        let req = request(
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            7,
        );
        assert_eq!(req.len(), REQUEST_LEN);
        assert_eq!(
            &req[24..26],
            &40000u16.to_be_bytes(),
            "source port, network order"
        );
        assert_eq!(
            &req[28..32],
            &[10, 0, 0, 1],
            "IPv4 source in the first word"
        );
    }

    /// Destroys a real loopback connection: the client's read fails with
    /// ECONNABORTED and the server sees a reset; a second destroy finds
    /// nothing. Needs CAP_NET_ADMIN (the test suite runs as root).
    #[test]
    fn destroys_a_live_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        server.read_exact(&mut one).unwrap();

        let diag = diag_socket().unwrap();
        let local = client.local_addr().unwrap();
        let remote = client.peer_addr().unwrap();
        assert!(destroy(&diag, local, remote).unwrap(), "socket found");
        let err = client.read(&mut one).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNABORTED));
        let err = server.read(&mut one).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(!destroy(&diag, local, remote).unwrap(), "already gone");
    }
}
