//! Address conversions between the kernel's context fields and the
//! `mesh_common::SockAddr` layout (16 bytes, IPv4 mapped into IPv6).
use mesh_common::{SockAddr, FAMILY_V4, FAMILY_V6};

/// `::ffff:a.b.c.d` for an IPv4 address held as a network-order `u32`.
#[inline(always)]
pub fn mapped_v4(ip_be: u32) -> [u8; 16] {
    let b = ip_be.to_ne_bytes();
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3],
    ]
}

/// 16 bytes of an IPv6 address held as four network-order words.
#[inline(always)]
pub fn v6_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

/// True for `::ffff:0:0/96`, given network-order words.
#[inline(always)]
pub fn is_v4_mapped(words: [u32; 4]) -> bool {
    words[0] == 0 && words[1] == 0 && u32::from_be(words[2]) == 0xffff
}

/// True for 127.0.0.0/8 given a network-order `u32`.
#[inline(always)]
pub fn is_loopback_v4(ip_be: u32) -> bool {
    ip_be.to_ne_bytes()[0] == 127
}

/// True for `::1`, given network-order words.
#[inline(always)]
pub fn is_loopback_v6(words: [u32; 4]) -> bool {
    words[0] == 0 && words[1] == 0 && words[2] == 0 && u32::from_be(words[3]) == 1
}

#[inline(always)]
pub fn sock_addr_v4(ip_be: u32, port: u16) -> SockAddr {
    SockAddr {
        addr: mapped_v4(ip_be),
        port,
        family: FAMILY_V4,
        _pad: 0,
    }
}

#[inline(always)]
pub fn sock_addr_v6(words: [u32; 4], port: u16) -> SockAddr {
    SockAddr {
        addr: v6_bytes(words),
        port,
        family: FAMILY_V6,
        _pad: 0,
    }
}
