//! `cgroup/connect4` and `cgroup/connect6`: hop ① of the data path.
//!
//! For a TCP socket whose network namespace is enrolled, rewrite the
//! destination to the agent's outbound listener and record the original one
//! under the socket cookie. Everything else is left untouched. The programs
//! allow every `connect()` (return 1) except one an authorization DENY
//! compiled into `deny_connect` forbids (return 0: the caller gets EPERM,
//! no packet leaves the pod) and one whose original destination cannot be
//! stored (fail closed rather than leave the mesh).
//!
//! A UDP `connect()` to port 53 is DNS capture (`dns.rs`); other UDP and
//! non-TCP sockets are left alone.
//!
//! Order in an enrolled namespace: the DENY first, whatever the socket;
//! then the agent-socket bypass, honoured only for a socket that is really
//! the agent's (`agent.rs`: mark, netns and cgroup), never for the mark alone;
//! then the same-node fast path: a (pod, destination) pair the agent has
//! authorized (`fast_path`) connects directly, its socket marked so that
//! sock_ops reports it to the agent.
use aya_ebpf::{
    helpers::generated::{bpf_get_current_cgroup_id, bpf_get_netns_cookie},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
    EbpfContext,
};
use aya_log_ebpf::debug;
use mesh_common::{
    stat, CaptureConfig, DenyKey, FastPathKey, PortExclusion, SockAddr, ENROLL_CAPTURE_OUTBOUND,
    HBONE_PORT,
};

use crate::{
    addr::{
        is_loopback_v4, is_loopback_v6, is_v4_mapped, mapped_v4, sock_addr_v4, sock_addr_v6,
        v6_bytes,
    },
    agent::is_agent_socket,
    dns,
    maps::{
        count, CAPTURE_CONFIG, DENY_CONNECT, ENROLLED_NETNS, EXCLUDED_PORTS, FAST_PATH,
        FAST_PATH_SOCKET, ORIG_DST_BY_SOCKET,
    },
};

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const ALLOW: i32 = 1;
const REJECT: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn mesh_connect4(ctx: SockAddrContext) -> i32 {
    match try_connect4(&ctx) {
        Err(Denied) => REJECT,
        Ok(()) => ALLOW,
    }
}

#[cgroup_sock_addr(connect6)]
pub fn mesh_connect6(ctx: SockAddrContext) -> i32 {
    match try_connect6(&ctx) {
        Err(Denied) => REJECT,
        Ok(()) => ALLOW,
    }
}

/// This `connect()` is refused: an authorization DENY, or no room for its
/// original destination.
struct Denied;

/// What the checks common to both families decided.
enum Verdict {
    Capture { netns: u64, config: CaptureConfig },
    Leave,
    Deny,
}

/// True when the agent authorized this pod for this same-node destination
/// (`fast_path`) and the socket is marked as such, so sock_ops reports the
/// connection; without the mark (no memory) the connection is captured.
#[inline(always)]
fn fast_path(ctx: &SockAddrContext, netns: u64, addr: [u8; 16], port: u16) -> bool {
    let key = FastPathKey {
        netns_cookie: netns,
        addr,
        port,
        _pad: [0; 6],
    };
    // SAFETY: presence check only.
    if unsafe { FAST_PATH.get(key) }.is_none() {
        return false;
    }
    let mut mark = 1u8;
    // SAFETY: ctx->sk is a full socket in connect hooks; the helper creates
    // the storage or returns the existing one.
    let slot = unsafe { FAST_PATH_SOCKET.get_or_insert_ptr_mut(ctx, Some(&mut mark)) };
    if slot.is_null() {
        count(stat::MAP_ERRORS);
        return false;
    }
    count(stat::FAST_PATH);
    true
}

/// True when `deny_connect` holds (netns, addr, port) or (netns, addr, any).
#[inline(always)]
fn denied(netns: u64, addr: [u8; 16], port: u16) -> bool {
    let mut key = DenyKey {
        netns_cookie: netns,
        addr,
        port,
        _pad: [0; 6],
    };
    // SAFETY: presence checks only.
    if unsafe { DENY_CONNECT.get(key) }.is_some() {
        return true;
    }
    key.port = 0;
    // SAFETY: as above.
    unsafe { DENY_CONNECT.get(key) }.is_some()
}

/// Enrolment, agent-socket, policy, port and exclusion checks shared by
/// both hooks. `addr` is the destination, IPv4 mapped.
#[inline(always)]
fn decide(ctx: &SockAddrContext, addr: [u8; 16], port: u16) -> Verdict {
    // SAFETY: the kernel hands us a valid bpf_sock_addr for the program's lifetime.
    let sa = unsafe { &*ctx.sock_addr };
    if sa.type_ != SOCK_STREAM {
        return Verdict::Leave;
    }
    // SAFETY: helper valid in cgroup_sock_addr programs; the context is ours.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    // SAFETY: read-only lookup; the value is copied before any map update.
    let Some(enrolled) = (unsafe { ENROLLED_NETNS.get(netns) }) else {
        return Verdict::Leave;
    };
    if enrolled.flags & ENROLL_CAPTURE_OUTBOUND == 0 {
        return Verdict::Leave;
    }
    let Some(config) = CAPTURE_CONFIG.get(0) else {
        return Verdict::Leave;
    };
    let config = *config;
    // Before every bypass rule: an excluded port is off the mesh, not off
    // policy, and a mark is not a licence.
    if denied(netns, addr, port) {
        count(stat::DENIED_CONNECT);
        return Verdict::Deny;
    }
    // SAFETY: in connect hooks ctx->sk is a full, non-null socket pointer.
    let mark = unsafe { (*sa.__bindgen_anon_1.sk).mark };
    // SAFETY: helper valid in cgroup_sock_addr programs (process context).
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if is_agent_socket(mark, netns, cgroup_id) {
        count(stat::BYPASS_AGENT);
        return Verdict::Leave;
    }
    if port == HBONE_PORT || port == config.agent_port {
        count(stat::BYPASS_MESH_PORT);
        return Verdict::Leave;
    }
    let exclusion = PortExclusion {
        netns_cookie: netns,
        port,
        _pad: [0; 6],
    };
    // SAFETY: presence check only.
    if unsafe { EXCLUDED_PORTS.get(exclusion) }.is_some() {
        count(stat::BYPASS_EXCLUDED);
        return Verdict::Leave;
    }
    // After the DENY: a pair in `fast_path` is one the agent allowed, and
    // every view change empties the map before a new decision is cached.
    if fast_path(ctx, netns, addr, port) {
        return Verdict::Leave;
    }
    Verdict::Capture { netns, config }
}

/// Stores `orig` on this socket. `Err(Denied)` when the kernel cannot
/// (out of memory): the connection is refused, it does not leave the mesh.
#[inline(always)]
fn remember(ctx: &SockAddrContext, orig: &SockAddr) -> Result<(), Denied> {
    let mut value = *orig;
    // SAFETY: ctx->sk is a full socket in connect hooks; the helper creates
    // the storage (initialised from `value`) or returns the existing one.
    let slot = unsafe { ORIG_DST_BY_SOCKET.get_or_insert_ptr_mut(ctx, Some(&mut value)) };
    if slot.is_null() {
        count(stat::MAP_ERRORS);
        return Err(Denied);
    }
    // SAFETY: non-null storage of this socket, sized for a SockAddr; a
    // second connect() on the socket overwrites the first's destination.
    unsafe { *slot = *orig };
    Ok(())
}

fn try_connect4(ctx: &SockAddrContext) -> Result<(), Denied> {
    // SAFETY: valid context pointer, see `decide`.
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.type_ == SOCK_DGRAM {
        dns::redirect_v4(ctx);
        return Ok(());
    }
    let ip = sa.user_ip4;
    let port = u16::from_be(sa.user_port as u16);
    let (netns, config) = match decide(ctx, mapped_v4(ip), port) {
        Verdict::Capture { netns, config } => (netns, config),
        Verdict::Leave => return Ok(()),
        Verdict::Deny => return Err(Denied),
    };
    if is_loopback_v4(ip) {
        count(stat::BYPASS_LOOPBACK);
        return Ok(());
    }
    remember(ctx, &sock_addr_v4(ip, port))?;
    sa.user_ip4 = u32::from_ne_bytes(config.agent_v4);
    sa.user_port = u32::from(config.agent_port.to_be());
    count(stat::REDIRECTED);
    debug!(
        ctx,
        "connect4 netns={} dst={:i}:{} -> agent",
        netns,
        u32::from_be(ip),
        port
    );
    Ok(())
}

fn try_connect6(ctx: &SockAddrContext) -> Result<(), Denied> {
    // SAFETY: valid context pointer, see `decide`.
    let sa = unsafe { &mut *ctx.sock_addr };
    if sa.type_ == SOCK_DGRAM {
        dns::redirect_v6(ctx);
        return Ok(());
    }
    let words = [
        sa.user_ip6[0],
        sa.user_ip6[1],
        sa.user_ip6[2],
        sa.user_ip6[3],
    ];
    let port = u16::from_be(sa.user_port as u16);
    let (netns, config) = match decide(ctx, v6_bytes(words), port) {
        Verdict::Capture { netns, config } => (netns, config),
        Verdict::Leave => return Ok(()),
        Verdict::Deny => return Err(Denied),
    };
    if is_v4_mapped(words) {
        // A dual-stack socket talking IPv4: capture it through the IPv4 agent.
        if is_loopback_v4(words[3]) {
            count(stat::BYPASS_LOOPBACK);
            return Ok(());
        }
        remember(ctx, &sock_addr_v4(words[3], port))?;
        sa.user_ip6[3] = u32::from_ne_bytes(config.agent_v4);
    } else {
        if is_loopback_v6(words) {
            count(stat::BYPASS_LOOPBACK);
            return Ok(());
        }
        if config.has_v6 == 0 {
            count(stat::BYPASS_NO_V6);
            return Ok(());
        }
        remember(ctx, &sock_addr_v6(words, port))?;
        let a = config.agent_v6;
        sa.user_ip6[0] = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
        sa.user_ip6[1] = u32::from_ne_bytes([a[4], a[5], a[6], a[7]]);
        sa.user_ip6[2] = u32::from_ne_bytes([a[8], a[9], a[10], a[11]]);
        sa.user_ip6[3] = u32::from_ne_bytes([a[12], a[13], a[14], a[15]]);
    }
    sa.user_port = u32::from(config.agent_port.to_be());
    count(stat::REDIRECTED);
    debug!(ctx, "connect6 netns={} port={} -> agent", netns, port);
    Ok(())
}
