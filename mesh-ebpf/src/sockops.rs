//! `sock_ops`: completes hop ① once a redirected connection is established.
//!
//! The agent's accepted socket has a different cookie than the pod's, so the
//! original destination is re-keyed from the client socket's cookie to the
//! connection's address tuple, which both ends see identically. This runs in
//! `ACTIVE_ESTABLISHED`, i.e. while the client processes the SYN-ACK and
//! before it sends the final ACK — so the entry exists before the agent's
//! `accept()` can return.
use aya_ebpf::{
    bindings::BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, helpers::generated::bpf_get_socket_cookie,
    macros::sock_ops, programs::SockOpsContext,
};
use aya_log_ebpf::debug;
use mesh_common::{stat, ConnTuple, SockAddr};

use crate::{
    addr::{sock_addr_v4, sock_addr_v6},
    maps::{count, ORIG_DST_BY_COOKIE, ORIG_DST_BY_TUPLE},
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sock_ops]
pub fn mesh_sockops(ctx: SockOpsContext) -> u32 {
    let _ = try_sockops(&ctx);
    0
}

fn try_sockops(ctx: &SockOpsContext) -> Result<(), i64> {
    if ctx.op() != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        return Ok(());
    }
    // SAFETY: helper valid in sock_ops programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    // SAFETY: the value is copied out before the map is modified.
    let Some(orig) = (unsafe { ORIG_DST_BY_COOKIE.get(cookie) }) else {
        return Ok(());
    };
    let orig = *orig;
    // Read every context field up front, straight from the context pointer:
    // the verifier rejects loads through a ctx pointer the compiler offset
    // early and carried across branches.
    let f = read_fields(ctx);
    let local_port = f.local_port as u16;
    let remote_port = u16::from_be((f.remote_port >> 16) as u16);
    let tuple = match f.family {
        AF_INET => ConnTuple {
            src: sock_addr_v4(f.local_ip4, local_port),
            dst: sock_addr_v4(f.remote_ip4, remote_port),
        },
        AF_INET6 => ConnTuple {
            src: sock_addr_v6(f.local_ip6, local_port),
            dst: sock_addr_v6(f.remote_ip6, remote_port),
        },
        _ => return Ok(()),
    };
    // The agent cannot know which family tag the client used (an IPv4 peer
    // may arrive on a dual-stack listener), so keys carry addresses only.
    let tuple = ConnTuple {
        src: SockAddr {
            family: 0,
            ..tuple.src
        },
        dst: SockAddr {
            family: 0,
            ..tuple.dst
        },
    };
    if ORIG_DST_BY_TUPLE.insert(tuple, orig, 0).is_err() {
        count(stat::MAP_ERRORS);
        return Ok(());
    }
    let _ = ORIG_DST_BY_COOKIE.remove(cookie);
    count(stat::ORIG_DST_RECORDED);
    debug!(
        ctx,
        "sockops: original destination recorded, src port {}", local_port
    );
    Ok(())
}

struct Fields {
    family: u32,
    local_ip4: u32,
    remote_ip4: u32,
    local_ip6: [u32; 4],
    remote_ip6: [u32; 4],
    local_port: u32,
    remote_port: u32,
}

#[inline(always)]
fn read_fields(ctx: &SockOpsContext) -> Fields {
    let ops = ctx.ops;
    // SAFETY: `ops` is the live context; volatile keeps each load a direct
    // `ctx + offset` access in program order.
    unsafe {
        use core::ptr::{addr_of, read_volatile as rv};
        Fields {
            family: rv(addr_of!((*ops).family)),
            local_ip4: rv(addr_of!((*ops).local_ip4)),
            remote_ip4: rv(addr_of!((*ops).remote_ip4)),
            local_ip6: [
                rv(addr_of!((*ops).local_ip6[0])),
                rv(addr_of!((*ops).local_ip6[1])),
                rv(addr_of!((*ops).local_ip6[2])),
                rv(addr_of!((*ops).local_ip6[3])),
            ],
            remote_ip6: [
                rv(addr_of!((*ops).remote_ip6[0])),
                rv(addr_of!((*ops).remote_ip6[1])),
                rv(addr_of!((*ops).remote_ip6[2])),
                rv(addr_of!((*ops).remote_ip6[3])),
            ],
            local_port: rv(addr_of!((*ops).local_port)),
            remote_port: rv(addr_of!((*ops).remote_port)),
        }
    }
}
