//! DNS capture without iptables or a `resolv.conf` change: an enrolled
//! pod's UDP queries to port 53 go to the agent's DNS proxy
//! (`capture_config.agent_v4`, `dns_port`), and the answers come back
//! looking as if the resolver the pod asked had sent them.
//!
//! - `cgroup/sendmsg4` ([`mesh_dns_send4`]): an unconnected socket's
//!   `sendto(resolver:53)`; `connect.rs` calls [`redirect_v4`] for a UDP
//!   `connect(resolver:53)` (glibc connects its socket, then `send()`s);
//! - the resolver asked is kept on the socket (`dns_orig_server` socket
//!   storage: no shared capacity, so no pod can evict another's entries,
//!   and it goes with the socket);
//! - `cgroup/recvmsg4` ([`mesh_dns_recv4`]): a datagram from the agent's
//!   DNS port on such a socket is reported by `recvfrom()` as coming from
//!   the resolver asked — resolvers (glibc's `res_send`, musl) drop answers
//!   whose source is not their nameserver;
//! - `cgroup/getpeername4` ([`mesh_dns_peer4`]): a connected DNS socket's
//!   peer reads as the resolver it connected to.
//!
//! IPv6 sockets have the same three hooks (`*6`) and `connect6`'s UDP case:
//! an IPv4-mapped resolver goes to the agent's IPv4 address (mapped), an
//! IPv6 one to `agent_v6` when the agent has one (else it is left alone,
//! `bypass_no_ipv6_agent`).
//!
//! Left alone: the agent's own sockets (`agent.rs`), namespaces not
//! enrolled, loopback resolvers (a pod's own cache), a pod that excludes
//! port 53, and everything when `dns_port` is 0. DNS over TCP is a TCP
//! `connect()` like any other and goes to the outbound listener.
//!
//! A query whose resolver cannot be stored (out of memory) is not
//! redirected: it goes to the resolver it was sent to (`map_errors`). No
//! policy decision rests on DNS capture, and a redirected query whose
//! answer the resolver would then drop helps no one.
use aya_ebpf::{
    helpers::generated::{bpf_get_current_cgroup_id, bpf_get_netns_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
    EbpfContext,
};
use aya_log_ebpf::debug;
use mesh_common::{
    stat, CaptureConfig, PortExclusion, SockAddr, DNS_PORT, ENROLL_CAPTURE_OUTBOUND, FAMILY_V4,
};

use crate::{
    addr::{is_loopback_v4, is_loopback_v6, is_v4_mapped, mapped_v4, sock_addr_v4, sock_addr_v6},
    agent::is_agent_socket,
    maps::{count, CAPTURE_CONFIG, DNS_ORIG_SERVER, ENROLLED_NETNS, EXCLUDED_PORTS},
};

const SOCK_DGRAM: u32 = 2;
/// `sendmsg`, `recvmsg` and `getpeername` hooks must return 1 (allow).
const ALLOW: i32 = 1;

#[cgroup_sock_addr(sendmsg4)]
pub fn mesh_dns_send4(ctx: SockAddrContext) -> i32 {
    redirect_v4(&ctx);
    ALLOW
}

#[cgroup_sock_addr(recvmsg4)]
pub fn mesh_dns_recv4(ctx: SockAddrContext) -> i32 {
    if restore_v4(&ctx) {
        count(stat::DNS_REPLY_SOURCE_RESTORED);
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
pub fn mesh_dns_peer4(ctx: SockAddrContext) -> i32 {
    restore_v4(&ctx);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn mesh_dns_send6(ctx: SockAddrContext) -> i32 {
    redirect_v6(&ctx);
    ALLOW
}

#[cgroup_sock_addr(recvmsg6)]
pub fn mesh_dns_recv6(ctx: SockAddrContext) -> i32 {
    if restore_v6(&ctx) {
        count(stat::DNS_REPLY_SOURCE_RESTORED);
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn mesh_dns_peer6(ctx: SockAddrContext) -> i32 {
    restore_v6(&ctx);
    ALLOW
}

/// The capture configuration when this socket's DNS goes to the agent:
/// a UDP socket of an enrolled namespace that is not the agent's, DNS
/// capture on, port 53 not excluded by the pod.
#[inline(always)]
fn capture_target(ctx: &SockAddrContext) -> Option<CaptureConfig> {
    // SAFETY: the kernel hands us a valid bpf_sock_addr for the program's lifetime.
    let sa = unsafe { &*ctx.sock_addr };
    if sa.type_ != SOCK_DGRAM {
        return None;
    }
    let config = *CAPTURE_CONFIG.get(0)?;
    if config.dns_port == 0 {
        return None;
    }
    // SAFETY: helper valid in cgroup_sock_addr programs; the context is ours.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    // SAFETY: read-only lookup of a Copy value.
    let enrolled = unsafe { ENROLLED_NETNS.get(netns) }?;
    if enrolled.flags & ENROLL_CAPTURE_OUTBOUND == 0 {
        return None;
    }
    // SAFETY: in sock_addr hooks ctx->sk is a full, non-null socket pointer.
    let mark = unsafe { (*sa.__bindgen_anon_1.sk).mark };
    // SAFETY: helper valid in cgroup_sock_addr programs (process context).
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if is_agent_socket(mark, netns, cgroup_id) {
        count(stat::BYPASS_AGENT);
        return None;
    }
    let exclusion = PortExclusion {
        netns_cookie: netns,
        port: DNS_PORT,
        _pad: [0; 6],
    };
    // SAFETY: presence check only.
    if unsafe { EXCLUDED_PORTS.get(exclusion) }.is_some() {
        count(stat::BYPASS_EXCLUDED);
        return None;
    }
    Some(config)
}

/// Stores the resolver asked on this socket; false when the kernel cannot.
#[inline(always)]
fn remember(ctx: &SockAddrContext, server: &SockAddr) -> bool {
    let mut value = *server;
    // SAFETY: ctx->sk is a full socket; the helper creates the storage
    // (initialised from `value`) or returns the existing one.
    let slot = unsafe { DNS_ORIG_SERVER.get_or_insert_ptr_mut(ctx, Some(&mut value)) };
    if slot.is_null() {
        count(stat::MAP_ERRORS);
        return false;
    }
    // SAFETY: non-null storage of this socket, sized for a SockAddr. The
    // last resolver asked wins: the answers of an earlier one still come
    // from the agent and are reported as this one's.
    unsafe { *slot = *server };
    true
}

/// For an IPv4 `sendmsg`/`connect` to port 53 of a captured socket:
/// remember the resolver, send to the agent's DNS port instead.
#[inline(always)]
pub fn redirect_v4(ctx: &SockAddrContext) {
    // SAFETY: valid context pointer, see `capture_target`.
    let sa = unsafe { &mut *ctx.sock_addr };
    let ip = sa.user_ip4;
    let port = u16::from_be(sa.user_port as u16);
    if port != DNS_PORT || is_loopback_v4(ip) {
        return;
    }
    let Some(config) = capture_target(ctx) else {
        return;
    };
    if !remember(ctx, &sock_addr_v4(ip, port)) {
        return;
    }
    sa.user_ip4 = u32::from_ne_bytes(config.agent_v4);
    sa.user_port = u32::from(config.dns_port.to_be());
    count(stat::DNS_REDIRECTED);
    debug!(ctx, "dns4 {:i}:53 -> agent", u32::from_be(ip));
}

/// For an address the agent's DNS port reports on a socket that asked a
/// resolver: the resolver's address instead. True when rewritten.
#[inline(always)]
fn restore_v4(ctx: &SockAddrContext) -> bool {
    // SAFETY: valid context pointer, see `capture_target`.
    let sa = unsafe { &mut *ctx.sock_addr };
    // Every UDP `recvfrom()` below the cgroup root runs this: the cheap
    // address comparison first, the socket storage only for the agent's.
    let Some(config) = CAPTURE_CONFIG.get(0) else {
        return false;
    };
    if config.dns_port == 0
        || sa.user_ip4 != u32::from_ne_bytes(config.agent_v4)
        || u16::from_be(sa.user_port as u16) != config.dns_port
    {
        return false;
    }
    // SAFETY: ctx->sk is a full socket; lookup without creation.
    let slot = unsafe { DNS_ORIG_SERVER.get_ptr_mut(ctx) };
    if slot.is_null() {
        return false;
    }
    // SAFETY: non-null storage of this socket, sized for a SockAddr.
    let server = unsafe { *slot };
    if server.family != FAMILY_V4 {
        return false;
    }
    let a = server.addr;
    sa.user_ip4 = u32::from_ne_bytes([a[12], a[13], a[14], a[15]]);
    sa.user_port = u32::from(server.port.to_be());
    true
}

/// The context's IPv6 address as four network-order words.
#[inline(always)]
fn ip6_words(sa: &aya_ebpf::bindings::bpf_sock_addr) -> [u32; 4] {
    [
        sa.user_ip6[0],
        sa.user_ip6[1],
        sa.user_ip6[2],
        sa.user_ip6[3],
    ]
}

/// Sets the context's IPv6 address from 16 network-order bytes.
#[inline(always)]
fn set_ip6(sa: &mut aya_ebpf::bindings::bpf_sock_addr, a: [u8; 16]) {
    sa.user_ip6[0] = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
    sa.user_ip6[1] = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]);
    sa.user_ip6[2] = u32::from_ne_bytes([a[8], a[9], a[10], a[11]]);
    sa.user_ip6[3] = u32::from_ne_bytes([a[12], a[13], a[14], a[15]]);
}

/// Word-wise equality (no `memcmp` in BPF).
#[inline(always)]
fn same_ip6(words: [u32; 4], a: [u8; 16]) -> bool {
    words[0] == u32::from_ne_bytes([a[0], a[1], a[2], a[3]])
        && words[1] == u32::from_ne_bytes([a[4], a[5], a[6], a[7]])
        && words[2] == u32::from_ne_bytes([a[8], a[9], a[10], a[11]])
        && words[3] == u32::from_ne_bytes([a[12], a[13], a[14], a[15]])
}

/// [`redirect_v4`] for IPv6 sockets: an IPv4-mapped resolver goes to the
/// agent's IPv4 address (mapped), an IPv6 one to `agent_v6` if configured.
#[inline(always)]
pub fn redirect_v6(ctx: &SockAddrContext) {
    // SAFETY: valid context pointer, see `capture_target`.
    let sa = unsafe { &mut *ctx.sock_addr };
    let words = ip6_words(sa);
    let port = u16::from_be(sa.user_port as u16);
    if port != DNS_PORT {
        return;
    }
    let mapped = is_v4_mapped(words);
    if (mapped && is_loopback_v4(words[3])) || (!mapped && is_loopback_v6(words)) {
        return;
    }
    let Some(config) = capture_target(ctx) else {
        return;
    };
    let (server, agent) = if mapped {
        let agent = mapped_v4(u32::from_ne_bytes(config.agent_v4));
        (sock_addr_v4(words[3], port), agent)
    } else {
        if config.has_v6 == 0 {
            count(stat::BYPASS_NO_V6);
            return;
        }
        (sock_addr_v6(words, port), config.agent_v6)
    };
    if !remember(ctx, &server) {
        return;
    }
    set_ip6(sa, agent);
    sa.user_port = u32::from(config.dns_port.to_be());
    count(stat::DNS_REDIRECTED);
    debug!(ctx, "dns6 resolver port 53 -> agent");
}

/// [`restore_v4`] for IPv6 sockets. The socket's storage says which agent
/// address the query went to (IPv4 mapped or `agent_v6`).
#[inline(always)]
fn restore_v6(ctx: &SockAddrContext) -> bool {
    // SAFETY: valid context pointer, see `capture_target`.
    let sa = unsafe { &mut *ctx.sock_addr };
    let Some(config) = CAPTURE_CONFIG.get(0) else {
        return false;
    };
    if config.dns_port == 0 || u16::from_be(sa.user_port as u16) != config.dns_port {
        return false;
    }
    // SAFETY: ctx->sk is a full socket; lookup without creation.
    let slot = unsafe { DNS_ORIG_SERVER.get_ptr_mut(ctx) };
    if slot.is_null() {
        return false;
    }
    // SAFETY: non-null storage of this socket, sized for a SockAddr.
    let server = unsafe { *slot };
    let agent = if server.family == FAMILY_V4 {
        mapped_v4(u32::from_ne_bytes(config.agent_v4))
    } else {
        config.agent_v6
    };
    if !same_ip6(ip6_words(sa), agent) {
        return false;
    }
    set_ip6(sa, server.addr);
    sa.user_port = u32::from(server.port.to_be());
    true
}
