//! Recovering the original destination of a connection the agent accepted:
//! the sock_ops program stored it under the connection's address tuple.
use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Mutex,
};

use mesh_common::{ConnTuple, SockAddr, FAMILY_V4};

use super::maps::OrigDstMap;

/// Shared, thread-safe view of the `orig_dst_tuple` map.
pub struct OrigDstTable {
    map: Mutex<OrigDstMap>,
}

/// Key-side encoding: 16 bytes, IPv4 mapped into IPv6, family left 0 (the
/// kernel program writes keys the same way).
fn key_addr(addr: SocketAddr) -> SockAddr {
    let v6 = match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6, |v4| v4.to_ipv6_mapped()),
    };
    SockAddr {
        addr: v6.octets(),
        port: addr.port(),
        family: 0,
        _pad: 0,
    }
}

/// The address an application asked for, back as a `SocketAddr`.
pub fn to_socket_addr(value: &SockAddr) -> SocketAddr {
    let v6 = Ipv6Addr::from(value.addr);
    let ip = match (value.family, v6.to_ipv4_mapped()) {
        (FAMILY_V4, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    };
    SocketAddr::new(ip, value.port)
}

/// The tuple key of a connection the agent accepted: the pod is the peer,
/// the agent's listener is the local address.
pub fn tuple_for(peer: SocketAddr, local: SocketAddr) -> ConnTuple {
    ConnTuple {
        src: key_addr(peer),
        dst: key_addr(local),
    }
}

impl OrigDstTable {
    pub fn new(map: OrigDstMap) -> Self {
        Self {
            map: Mutex::new(map),
        }
    }

    /// Takes (reads and deletes) the original destination of the connection
    /// from `peer` to `local`. `None` means the kernel did not capture it.
    pub fn take(&self, peer: SocketAddr, local: SocketAddr) -> Option<SocketAddr> {
        let key = tuple_for(peer, local);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let value = map.get(&key, 0).ok()?;
        // A leftover entry would only be evicted by LRU; remove it now.
        let _ = map.remove(&key);
        Some(to_socket_addr(&value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v4_mapped_peers_give_the_same_key() {
        let a = tuple_for(
            "10.1.0.2:40000".parse().unwrap(),
            "10.1.0.1:15001".parse().unwrap(),
        );
        let b = tuple_for(
            "[::ffff:10.1.0.2]:40000".parse().unwrap(),
            "[::ffff:10.1.0.1]:15001".parse().unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(&a.src.addr[10..], &[0xff, 0xff, 10, 1, 0, 2]);
    }

    #[test]
    fn original_destination_round_trips_per_family() {
        let v4 = SockAddr {
            addr: "::ffff:10.2.0.3".parse::<Ipv6Addr>().unwrap().octets(),
            port: 9080,
            family: FAMILY_V4,
            _pad: 0,
        };
        assert_eq!(to_socket_addr(&v4), "10.2.0.3:9080".parse().unwrap());
        let v6 = SockAddr {
            addr: "fd00::3".parse::<Ipv6Addr>().unwrap().octets(),
            port: 80,
            family: mesh_common::FAMILY_V6,
            _pad: 0,
        };
        assert_eq!(to_socket_addr(&v6), "[fd00::3]:80".parse().unwrap());
    }
}
