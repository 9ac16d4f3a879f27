//! `sock_ops`: completes hop ① once a redirected connection is established,
//! and vouches for the agent's own connections to STRICT pods.
//!
//! The agent's accepted socket has a different cookie than the pod's, so the
//! original destination moves from the pod socket's storage to a map keyed
//! by the connection's address tuple, which both ends see identically. This
//! runs in `ACTIVE_ESTABLISHED`, i.e. while the client processes the SYN-ACK
//! and before it sends the final ACK — so the entry exists before the
//! agent's `accept()` can return.
//!
//! In `TCP_CONNECT` (source port chosen, SYN not yet sent) a socket that is
//! the agent's (`agent.rs`) has its tuple put in `agent_conns`; `mesh_inbound`
//! lets exactly those SYNs from the node address reach a STRICT pod. The
//! entry goes at establishment.
//!
//! A captured socket also asks for state callbacks: when it reaches
//! `TCP_CLOSE` its tuple entry goes, so a connection the agent never
//! accepted (reset by a dying agent, a full backlog) leaves nothing behind
//! for LRU eviction to find. The agent's `take` usually removed it already.
//!
//! A pod socket that took the same-node fast path (`connect.rs` marked it
//! in `fast_path_socket`) is vouched for like the agent's own from
//! `TCP_CONNECT` to establishment (the agent authorized the pair, so a
//! STRICT destination admits it), and reported in `kernel_conn_events`
//! when established and when closed, with the bytes the kernel counted.
use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_TCP_CLOSE,
    },
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_sk_storage_delete, bpf_sk_storage_get,
    },
    macros::sock_ops,
    programs::SockOpsContext,
};
use aya_log_ebpf::debug;
use mesh_common::{
    stat, ConnTuple, KernelConnEvent, SockAddr, KERNEL_CONN_CLOSED, KERNEL_CONN_OPENED,
};

use crate::{
    addr::{sock_addr_v4, sock_addr_v6},
    agent::{identity, is_agent_socket},
    maps::{
        count, AGENT_CONNS, FAST_PATH_SOCKET, KERNEL_CONN_EVENTS, ORIG_DST_BY_SOCKET,
        ORIG_DST_BY_TUPLE,
    },
};

/// `fast_path_socket` values: connecting, then established (reported).
const FAST_CONNECTING: u8 = 1;
const FAST_ESTABLISHED: u8 = 2;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sock_ops]
pub fn mesh_sockops(ctx: SockOpsContext) -> u32 {
    let _ = try_sockops(&ctx);
    0
}

fn try_sockops(ctx: &SockOpsContext) -> Result<(), i64> {
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            if fast_path_mark(ctx).is_null() {
                agent_connecting(ctx)
            } else {
                fast_path_connecting(ctx)
            }
        }
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB => established(ctx),
        BPF_SOCK_OPS_STATE_CB => state_changed(ctx),
        _ => Ok(()),
    }
}

/// The map's address of a BTF map static, as helpers want it.
#[inline(always)]
fn map_ptr<T>(map: &T) -> *mut core::ffi::c_void {
    core::ptr::from_ref(map).cast_mut().cast()
}

fn agent_connecting(ctx: &SockOpsContext) -> Result<(), i64> {
    // SAFETY: helper valid in sock_ops programs.
    let netns = unsafe { bpf_get_netns_cookie(ctx.ops.cast()) };
    if identity().is_none_or(|id| id.netns_cookie != netns) {
        return Ok(());
    }
    let f = read_fields(ctx);
    if f.sk.is_null() {
        return Ok(());
    }
    // SAFETY: non-null full socket of this sock_ops call; `mark` is readable.
    let mark = unsafe { (*f.sk).mark };
    // SAFETY: TCP_CONNECT runs in the connect() caller's context.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if !is_agent_socket(mark, netns, cgroup_id) {
        return Ok(());
    }
    let Some(tuple) = tuple_of(&f) else {
        return Ok(());
    };
    if AGENT_CONNS.insert(tuple, 1, 0).is_err() {
        count(stat::MAP_ERRORS);
    }
    Ok(())
}

/// This socket's `fast_path_socket` value, or null when it has none.
#[inline(always)]
fn fast_path_mark(ctx: &SockOpsContext) -> *mut u8 {
    let f = read_fields(ctx);
    if f.sk.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: map and socket pointers are valid; no creation (flags 0).
    unsafe {
        bpf_sk_storage_get(
            map_ptr(&FAST_PATH_SOCKET),
            f.sk.cast(),
            core::ptr::null_mut(),
            0,
        )
    }
    .cast::<u8>()
}

/// A fast-path pod socket is about to send its SYN: vouch for it (a
/// STRICT destination admits the tuples in `agent_conns`) and ask to be
/// told of its state changes, so the entry goes even if it never connects.
fn fast_path_connecting(ctx: &SockOpsContext) -> Result<(), i64> {
    let f = read_fields(ctx);
    let Some(tuple) = tuple_of(&f) else {
        return Ok(());
    };
    if AGENT_CONNS.insert(tuple, 1, 0).is_err() {
        count(stat::MAP_ERRORS);
    }
    let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
    Ok(())
}

/// Sends `kind` for this fast-path connection to the agent; counted when
/// the ring buffer is full.
#[inline(always)]
fn report(ctx: &SockOpsContext, kind: u32, tuple: ConnTuple) {
    let ops = ctx.ops;
    // SAFETY: `ops` is the live context of a full socket (callers checked
    // `sk`); direct loads of its counters.
    let (bytes_acked, bytes_received, snd_nxt, snd_una) = unsafe {
        use core::ptr::{addr_of, read_volatile as rv};
        (
            rv(addr_of!((*ops).bytes_acked)),
            rv(addr_of!((*ops).bytes_received)),
            rv(addr_of!((*ops).snd_nxt)),
            rv(addr_of!((*ops).snd_una)),
        )
    };
    let event = KernelConnEvent {
        kind,
        // In a state callback, argument 0 is the state left.
        old_state: if kind == KERNEL_CONN_CLOSED {
            ctx.arg(0)
        } else {
            0
        },
        unacked: snd_nxt.wrapping_sub(snd_una),
        _pad: 0,
        // SAFETY: helper valid in sock_ops programs.
        netns_cookie: unsafe { bpf_get_netns_cookie(ctx.ops.cast()) },
        tuple,
        bytes_acked,
        bytes_received,
    };
    if KERNEL_CONN_EVENTS.output(&event, 0).is_err() {
        count(stat::FAST_PATH_EVENTS_LOST);
    }
}

fn established(ctx: &SockOpsContext) -> Result<(), i64> {
    let f = read_fields(ctx);
    if f.sk.is_null() {
        return Ok(());
    }
    // SAFETY: map and socket pointers are valid; no creation (flags 0).
    let stored = unsafe {
        bpf_sk_storage_get(
            map_ptr(&ORIG_DST_BY_SOCKET),
            f.sk.cast(),
            core::ptr::null_mut(),
            0,
        )
    }
    .cast::<SockAddr>();
    let Some(tuple) = tuple_of(&f) else {
        return Ok(());
    };
    if stored.is_null() {
        let mark = fast_path_mark(ctx);
        if !mark.is_null() {
            // SAFETY: non-null storage of this socket holding a u8.
            unsafe { *mark = FAST_ESTABLISHED };
            let _ = AGENT_CONNS.remove(tuple);
            report(ctx, KERNEL_CONN_OPENED, tuple);
            return Ok(());
        }
        // Not a captured pod socket; maybe one of the agent's, whose SYNs
        // no longer need vouching for.
        // SAFETY: helper valid in sock_ops programs.
        let netns = unsafe { bpf_get_netns_cookie(ctx.ops.cast()) };
        if identity().is_some_and(|id| id.netns_cookie == netns) {
            let _ = AGENT_CONNS.remove(tuple);
        }
        return Ok(());
    }
    // SAFETY: non-null storage of this socket holding a SockAddr.
    let orig = unsafe { *stored };
    if ORIG_DST_BY_TUPLE.insert(tuple, orig, 0).is_err() {
        count(stat::MAP_ERRORS);
        return Ok(());
    }
    // SAFETY: valid map and socket pointers.
    let _ = unsafe { bpf_sk_storage_delete(map_ptr(&ORIG_DST_BY_SOCKET), f.sk.cast()) };
    // Told when this socket closes, to drop an entry nobody took.
    let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
    count(stat::ORIG_DST_RECORDED);
    debug!(
        ctx,
        "sockops: original destination recorded, src port {}", f.local_port
    );
    Ok(())
}

/// A captured or fast-path socket changed TCP state (only those that asked
/// for it): on `TCP_CLOSE` a captured one's original destination is
/// dropped; a fast-path one's vouching goes and, if it was established,
/// its close is reported with the kernel's byte counts.
fn state_changed(ctx: &SockOpsContext) -> Result<(), i64> {
    if ctx.arg(1) != BPF_TCP_CLOSE {
        return Ok(());
    }
    let f = read_fields(ctx);
    let Some(tuple) = tuple_of(&f) else {
        return Ok(());
    };
    let mark = fast_path_mark(ctx);
    if mark.is_null() {
        let _ = ORIG_DST_BY_TUPLE.remove(&tuple);
        return Ok(());
    }
    let _ = AGENT_CONNS.remove(tuple);
    // SAFETY: non-null storage of this socket holding a u8.
    if unsafe { *mark } == FAST_ESTABLISHED {
        // SAFETY: as above; reported once.
        unsafe { *mark = FAST_CONNECTING };
        report(ctx, KERNEL_CONN_CLOSED, tuple);
    }
    Ok(())
}

/// The connection as the client sees it: its address and port, then the
/// peer's. The agent cannot know which family tag the client used (an IPv4
/// peer may arrive on a dual-stack listener), so keys carry addresses only.
#[inline(always)]
fn tuple_of(f: &Fields) -> Option<ConnTuple> {
    let local_port = f.local_port as u16;
    let remote_port = u16::from_be((f.remote_port >> 16) as u16);
    let (src, dst) = match f.family {
        AF_INET => (
            sock_addr_v4(f.local_ip4, local_port),
            sock_addr_v4(f.remote_ip4, remote_port),
        ),
        AF_INET6 => (
            sock_addr_v6(f.local_ip6, local_port),
            sock_addr_v6(f.remote_ip6, remote_port),
        ),
        _ => return None,
    };
    Some(ConnTuple {
        src: SockAddr { family: 0, ..src },
        dst: SockAddr { family: 0, ..dst },
    })
}

struct Fields {
    family: u32,
    local_ip4: u32,
    remote_ip4: u32,
    local_ip6: [u32; 4],
    remote_ip6: [u32; 4],
    local_port: u32,
    remote_port: u32,
    sk: *mut aya_ebpf::bindings::bpf_sock,
}

/// Reads every context field up front, straight from the context pointer:
/// the verifier rejects loads through a ctx pointer the compiler offset
/// early and carried across branches.
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
            sk: rv(addr_of!((*ops).__bindgen_anon_2.sk)),
        }
    }
}
