//! `cgroup_skb/ingress`: inbound enforcement of PeerAuthentication STRICT.
//!
//! For a pod whose address is in `strict_pods`, a new TCP connection (a SYN
//! without ACK) is dropped unless it comes from the node agent (which
//! delivers HBONE-authenticated traffic from its own address), from the pod
//! itself, or from loopback. Replies to connections the pod opened, and
//! every established flow, pass. Dropping in the kernel means plaintext
//! never reaches the pod, whatever path it took.
use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};
use mesh_common::stat;

use crate::{
    addr::mapped_v4,
    maps::{count, CAPTURE_CONFIG, STRICT_PODS},
};

const PASS: i32 = 1;
const DROP: i32 = 0;
const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

#[cgroup_skb(ingress)]
pub fn mesh_inbound(ctx: SkBuffContext) -> i32 {
    try_inbound(&ctx).unwrap_or(PASS)
}

/// Source, destination (16 bytes, IPv4 mapped) and TCP flags of a packet.
struct Packet {
    src: [u8; 16],
    dst: [u8; 16],
    flags: u8,
}

fn parse(ctx: &SkBuffContext) -> Option<Packet> {
    let first: u8 = ctx.load(0).ok()?;
    match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ctx.load::<u8>(9).ok()? != IPPROTO_TCP || ihl < 20 {
                return None;
            }
            let src: u32 = ctx.load(12).ok()?;
            let dst: u32 = ctx.load(16).ok()?;
            let flags: u8 = ctx.load(ihl + 13).ok()?;
            Some(Packet {
                src: mapped_v4(src),
                dst: mapped_v4(dst),
                flags,
            })
        }
        6 => {
            // Extension headers are not followed: only a direct TCP header counts.
            if ctx.load::<u8>(6).ok()? != IPPROTO_TCP {
                return None;
            }
            let src: [u8; 16] = ctx.load(8).ok()?;
            let dst: [u8; 16] = ctx.load(24).ok()?;
            let flags: u8 = ctx.load(40 + 13).ok()?;
            Some(Packet { src, dst, flags })
        }
        _ => None,
    }
}

fn try_inbound(ctx: &SkBuffContext) -> Option<i32> {
    let packet = parse(ctx)?;
    if packet.flags & TCP_SYN == 0 || packet.flags & TCP_ACK != 0 {
        return Some(PASS);
    }
    // SAFETY: presence check only.
    unsafe { STRICT_PODS.get(packet.dst) }?;
    let config = CAPTURE_CONFIG.get(0)?;
    let agent_v4 = mapped_v4(u32::from_ne_bytes(config.agent_v4));
    let from_agent =
        packet.src == agent_v4 || (config.has_v6 != 0 && packet.src == config.agent_v6);
    let loopback = packet.src[..12] == agent_v4[..12] && packet.src[12] == 127;
    if from_agent || loopback || packet.src == packet.dst {
        return Some(PASS);
    }
    count(stat::DENIED_PLAINTEXT);
    Some(DROP)
}
