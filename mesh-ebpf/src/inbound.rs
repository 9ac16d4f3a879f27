//! `cgroup_skb/ingress`: inbound enforcement of PeerAuthentication STRICT.
//!
//! For a pod whose address is in `strict_pods`, a new TCP connection (a SYN
//! without ACK) passes only when it comes
//! - to port 15008, the pod's own HBONE listener (the agent's, inside the
//!   pod's namespace; it accepts mutual TLS only, so this is how mTLS
//!   comes in, as with ztunnel's in-pod listener),
//! - from a connection the agent's own socket opened (`agent_conns`, filled
//!   by sock_ops; the agent delivers HBONE-authenticated traffic from the
//!   node address),
//! - from the node address to a port declared in `probe_ports` (the
//!   kubelet's probes),
//! - from the pod itself or from loopback.
//!
//! Anything else is dropped — other node-address sockets too (hostNetwork
//! pods, SNATed NodePort traffic): the source address proves nothing. An
//! IPv6 packet is followed through its extension headers (a bounded walk);
//! one whose headers cannot be walked to the end is dropped too. Replies
//! and established flows pass. Dropping in the kernel means plaintext never
//! reaches the pod, whatever path it took.
use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};
use mesh_common::{stat, ConnTuple, ProbePort, SockAddr, HBONE_PORT};

use crate::{
    addr::mapped_v4,
    maps::{count, AGENT_CONNS, CAPTURE_CONFIG, PROBE_PORTS, STRICT_PODS},
};

const PASS: i32 = 1;
const DROP: i32 = 0;
const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// IPv6 extension headers the walk follows, and the bound on their number.
const NH_HOP_BY_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_AUTH: u8 = 51;
const NH_DEST_OPTS: u8 = 60;
const MAX_EXT_HEADERS: usize = 8;

#[cgroup_skb(ingress)]
pub fn mesh_inbound(ctx: SkBuffContext) -> i32 {
    try_inbound(&ctx).unwrap_or(PASS)
}

/// What the packet turned out to be.
enum Packet {
    /// A TCP segment: addresses (IPv4 mapped), ports (host order), flags.
    Tcp {
        src: [u8; 16],
        dst: [u8; 16],
        sport: u16,
        dport: u16,
        flags: u8,
    },
    /// An IPv6 packet whose headers could not be walked to the end: it
    /// might carry a SYN, so a STRICT destination refuses it.
    Unparsed { dst: [u8; 16] },
    /// Anything else (not TCP).
    Other,
}

fn tcp_at(ctx: &SkBuffContext, off: usize, src: [u8; 16], dst: [u8; 16]) -> Option<Packet> {
    let sport: u16 = ctx.load(off).ok()?;
    let dport: u16 = ctx.load(off + 2).ok()?;
    let flags: u8 = ctx.load(off + 13).ok()?;
    Some(Packet::Tcp {
        src,
        dst,
        sport: u16::from_be(sport),
        dport: u16::from_be(dport),
        flags,
    })
}

fn parse_v4(ctx: &SkBuffContext, first: u8) -> Option<Packet> {
    let ihl = usize::from(first & 0x0f) * 4;
    if ctx.load::<u8>(9).ok()? != IPPROTO_TCP || ihl < 20 {
        return Some(Packet::Other);
    }
    let src: u32 = ctx.load(12).ok()?;
    let dst: u32 = ctx.load(16).ok()?;
    tcp_at(ctx, ihl, mapped_v4(src), mapped_v4(dst))
}

fn parse_v6(ctx: &SkBuffContext) -> Option<Packet> {
    let src: [u8; 16] = ctx.load(8).ok()?;
    let dst: [u8; 16] = ctx.load(24).ok()?;
    let mut next: u8 = ctx.load(6).ok()?;
    let mut off: usize = 40;
    for _ in 0..MAX_EXT_HEADERS {
        let len = match next {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DEST_OPTS => {
                let Ok(units) = ctx.load::<u8>(off + 1) else {
                    return Some(Packet::Unparsed { dst });
                };
                (usize::from(units) + 1) * 8
            }
            NH_FRAGMENT => {
                // Only the first fragment holds the TCP header; sockets see
                // reassembled packets, so a later one here is not a SYN's
                // start and cannot be judged.
                let Ok(offset) = ctx.load::<u16>(off + 2) else {
                    return Some(Packet::Unparsed { dst });
                };
                if u16::from_be(offset) & 0xfff8 != 0 {
                    return Some(Packet::Unparsed { dst });
                }
                8
            }
            NH_AUTH => {
                let Ok(units) = ctx.load::<u8>(off + 1) else {
                    return Some(Packet::Unparsed { dst });
                };
                (usize::from(units) + 2) * 4
            }
            _ => break,
        };
        let Ok(following) = ctx.load::<u8>(off) else {
            return Some(Packet::Unparsed { dst });
        };
        next = following;
        off += len;
    }
    match next {
        IPPROTO_TCP => match tcp_at(ctx, off, src, dst) {
            Some(packet) => Some(packet),
            None => Some(Packet::Unparsed { dst }),
        },
        // Still an extension header after the bound, or one we do not walk
        // (ESP, mobility, HIP, shim6, experimental): cannot be judged.
        NH_HOP_BY_HOP | NH_ROUTING | NH_FRAGMENT | NH_AUTH | NH_DEST_OPTS | 50 | 135 | 139
        | 140 | 253 | 254 => Some(Packet::Unparsed { dst }),
        _ => Some(Packet::Other),
    }
}

fn parse(ctx: &SkBuffContext) -> Option<Packet> {
    let first: u8 = ctx.load(0).ok()?;
    match first >> 4 {
        4 => parse_v4(ctx, first),
        6 => parse_v6(ctx),
        _ => None,
    }
}

fn is_strict(dst: [u8; 16]) -> bool {
    // SAFETY: presence check only.
    unsafe { STRICT_PODS.get(dst) }.is_some()
}

fn key(addr: [u8; 16], port: u16) -> SockAddr {
    SockAddr {
        addr,
        port,
        family: 0,
        _pad: 0,
    }
}

fn try_inbound(ctx: &SkBuffContext) -> Option<i32> {
    let (src, dst, sport, dport) = match parse(ctx)? {
        Packet::Other => return Some(PASS),
        Packet::Unparsed { dst } => {
            if !is_strict(dst) {
                return Some(PASS);
            }
            count(stat::DENIED_PLAINTEXT);
            return Some(DROP);
        }
        Packet::Tcp {
            src,
            dst,
            sport,
            dport,
            flags,
        } => {
            if flags & TCP_SYN == 0 || flags & TCP_ACK != 0 {
                return Some(PASS);
            }
            (src, dst, sport, dport)
        }
    };
    if !is_strict(dst) {
        return Some(PASS);
    }
    // The HBONE listener requires mTLS: no plaintext gets through it.
    if dport == HBONE_PORT {
        return Some(PASS);
    }
    let v4_prefix = mapped_v4(0);
    let loopback = src[..12] == v4_prefix[..12] && src[12] == 127;
    if loopback || src == dst {
        return Some(PASS);
    }
    let agent_conn = ConnTuple {
        src: key(src, sport),
        dst: key(dst, dport),
    };
    // SAFETY: presence check only.
    if unsafe { AGENT_CONNS.get(agent_conn) }.is_some() {
        return Some(PASS);
    }
    let config = CAPTURE_CONFIG.get(0)?;
    let agent_v4 = mapped_v4(u32::from_ne_bytes(config.agent_v4));
    let from_node = src == agent_v4 || (config.has_v6 != 0 && src == config.agent_v6);
    let probe = ProbePort {
        addr: dst,
        port: dport,
        _pad: [0; 6],
    };
    // SAFETY: presence check only.
    if from_node && unsafe { PROBE_PORTS.get(probe) }.is_some() {
        return Some(PASS);
    }
    count(stat::DENIED_PLAINTEXT);
    Some(DROP)
}
