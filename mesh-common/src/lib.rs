//! Map keys, values and constants shared by `mesh-ebpf` (kernel) and the
//! node agent (userspace).
//!
//! Everything here is `#[repr(C)]`, padded explicitly so the kernel verifier
//! never sees uninitialised bytes, and laid out identically on both sides.
//! Addresses are kept as 16 bytes in network byte order: IPv4 is stored as an
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), so one key type serves both
//! families.
#![no_std]
#![cfg_attr(feature = "user", allow(unsafe_code))]

/// The agent's outbound capture port (Istio's ztunnel uses the same).
pub const OUTBOUND_PORT: u16 = 15001;
/// HBONE (HTTP/2 CONNECT over mTLS, Istio's `hbone_mtls_port`); never
/// captured. The one definition: the eBPF programs skip it, and the
/// daemons use it through `mesh_hbone::HBONE_PORT`.
pub const HBONE_PORT: u16 = 15008;
/// The agent's DNS proxy port: enrolled pods' UDP DNS (port 53) goes to
/// the agent's redirect address on this port (`capture_config.dns_port`).
pub const DNS_PROXY_PORT: u16 = 15053;
/// The DNS port whose UDP traffic the capture redirects.
pub const DNS_PORT: u16 = 53;
/// `SO_MARK` the agent puts on its own sockets; the capture hooks skip them.
/// The value is Istio's ztunnel mark (1337), so operators recognise it.
pub const AGENT_SOCKET_MARK: u32 = 0x539;

/// Size of the LRU maps that carry original destinations.
pub const ORIG_DST_ENTRIES: u32 = 65_536;
/// Most pods a node agent enrols.
pub const ENROLLED_ENTRIES: u32 = 4_096;
/// Most (pod, port) exclusions.
pub const EXCLUDED_PORT_ENTRIES: u32 = 16_384;
/// Most (pod, destination) pairs denied at `connect()`.
pub const DENY_CONNECT_ENTRIES: u32 = 65_536;
/// Most (pod address, port) pairs declared as kubelet probe ports.
pub const PROBE_PORT_ENTRIES: u32 = 16_384;
/// Most agent connections to pods between `connect()` and establishment.
pub const AGENT_CONN_ENTRIES: u32 = 16_384;
/// Most (pod, destination) pairs the agent has authorized for the
/// same-node fast path.
pub const FAST_PATH_ENTRIES: u32 = 65_536;
/// Bytes of the ring buffer that reports fast-path connections to the
/// agent (a power of two, a multiple of the page size).
pub const KERNEL_CONN_EVENTS_BYTES: u32 = 256 * 1024;

/// Address family tags used in [`SockAddr::family`].
pub const FAMILY_V4: u16 = 4;
pub const FAMILY_V6: u16 = 6;

/// An IP address and port. `addr` is network byte order (IPv4 mapped into
/// IPv6), `port` is host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockAddr {
    pub addr: [u8; 16],
    pub port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`]: what the application asked for.
    pub family: u16,
    pub _pad: u32,
}

/// A TCP connection as seen from the client side: the pod's own address and
/// the address it actually connected to (after redirection: the agent).
/// The agent builds the same key from `peer_addr()`/`local_addr()` of the
/// accepted socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ConnTuple {
    pub src: SockAddr,
    pub dst: SockAddr,
}

/// Value of the `enrolled_netns` map, keyed by network-namespace cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Enrollment {
    /// Bit set of `ENROLL_*` flags.
    pub flags: u32,
    pub _reserved: u32,
    /// The pod's address (IPv4 mapped), read from its namespace at
    /// enrolment; all zero when it had none. Lets the agent tell which
    /// workload a netns cookie is (for `deny_connect`).
    pub pod_ip: [u8; 16],
}

/// Key of the `deny_connect` map: a destination an enrolled pod may not
/// `connect()` to, by authorization policy. `port` 0 means every port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DenyKey {
    pub netns_cookie: u64,
    /// Destination address as the application gave it (IPv4 mapped).
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 6],
}

/// Key of the `fast_path` map: a same-node destination (a mesh pod's own
/// address and port) the agent has authorized for the pod living in
/// network namespace `netns_cookie`; its `connect()` goes there directly.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FastPathKey {
    pub netns_cookie: u64,
    /// Destination address as the application gave it (IPv4 mapped).
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: [u8; 6],
}

/// [`KernelConnEvent::kind`]: the fast-path connection is established.
pub const KERNEL_CONN_OPENED: u32 = 1;
/// [`KernelConnEvent::kind`]: the fast-path connection has closed.
pub const KERNEL_CONN_CLOSED: u32 = 2;

/// What the kernel reports about a fast-path connection (one the agent
/// does not carry) through the `kernel_conn_events` ring buffer: from the
/// client pod's socket, at establishment and at close.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KernelConnEvent {
    /// [`KERNEL_CONN_OPENED`] or [`KERNEL_CONN_CLOSED`].
    pub kind: u32,
    /// At close: the TCP state the socket left for `TCP_CLOSE` (which
    /// FINs the byte counters below include depends on it).
    pub old_state: u32,
    /// The client pod's network namespace.
    pub netns_cookie: u64,
    /// Client address and port, then the server's (family tags unset).
    pub tuple: ConnTuple,
    /// The kernel's `bytes_acked` at close: sequence space the server
    /// acknowledged, so the data plus the SYN and, once acknowledged, the FIN.
    pub bytes_acked: u64,
    /// The kernel's `bytes_received` at close: the data plus the server's
    /// FIN once received.
    pub bytes_received: u64,
    /// At close: sequence space sent and not acknowledged (`snd_nxt -
    /// snd_una`); 0 means a FIN the client sent was acknowledged too.
    pub unacked: u32,
    pub _pad: u32,
}

/// Single entry of the `agent_identity` array map: what makes a socket the
/// agent's own. Only such a socket's `SO_MARK` is honoured, and only its
/// connections may open plaintext connections to STRICT pods from the node
/// address. Written at install by the installing process (the agent).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AgentIdentity {
    /// Cookie of the agent's network namespace.
    pub netns_cookie: u64,
    /// cgroup v2 id of the agent's cgroup.
    pub cgroup_id: u64,
}

/// Key of the `probe_ports` map: a port of a STRICT pod that takes
/// plaintext from the node address (the kubelet's probes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ProbePort {
    /// Pod address (IPv4 mapped).
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub _pad: [u8; 6],
}

/// Capture outbound TCP of this network namespace.
pub const ENROLL_CAPTURE_OUTBOUND: u32 = 1;

/// Key of the `excluded_ports` map: destination ports a pod keeps off the mesh.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PortExclusion {
    pub netns_cookie: u64,
    pub port: u16,
    pub _pad: [u8; 6],
}

/// Single entry of the `capture_config` array map: where captured connections go.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CaptureConfig {
    /// Agent outbound listener address for IPv4 pods (network order).
    pub agent_v4: [u8; 4],
    /// Agent outbound listener port (host order).
    pub agent_port: u16,
    /// Non-zero when `agent_v6` is set; IPv6 destinations are otherwise left alone.
    pub has_v6: u16,
    /// Agent outbound listener address for IPv6 pods (network order).
    pub agent_v6: [u8; 16],
    /// Socket mark of the agent's own sockets.
    pub agent_mark: u32,
    /// Port of the agent's DNS proxy on `agent_v4` (and `agent_v6`), host
    /// order; 0 leaves DNS alone. Takes what was padding before, so the
    /// value keeps its size and a pinned map written by an older agent
    /// reads as "DNS capture off".
    pub dns_port: u16,
    pub _pad: u16,
}

/// Indexes of the per-CPU `capture_stats` array.
pub mod stat {
    /// connect() redirected to the agent.
    pub const REDIRECTED: u32 = 0;
    /// Enrolled, but the destination is loopback.
    pub const BYPASS_LOOPBACK: u32 = 1;
    /// Enrolled, but the destination port is HBONE or the agent's own.
    pub const BYPASS_MESH_PORT: u32 = 2;
    /// Enrolled, but the port is in the pod's exclusion list.
    pub const BYPASS_EXCLUDED: u32 = 3;
    /// The socket carries the agent's mark.
    pub const BYPASS_AGENT: u32 = 4;
    /// IPv6 destination and no IPv6 agent address configured.
    pub const BYPASS_NO_V6: u32 = 5;
    /// sock_ops moved an original destination to the tuple map.
    pub const ORIG_DST_RECORDED: u32 = 6;
    /// A map update failed (out of memory, map full): a pod's `connect()`
    /// is refused; an agent connection is not vouched for; a DNS query
    /// goes to the resolver it was sent to.
    pub const MAP_ERRORS: u32 = 7;
    /// A plaintext connection attempt to a STRICT pod was dropped.
    pub const DENIED_PLAINTEXT: u32 = 8;
    /// A `connect()` refused in the kernel by an authorization DENY.
    pub const DENIED_CONNECT: u32 = 9;
    /// An enrolled pod's UDP DNS query redirected to the agent's DNS proxy
    /// (one per `sendto()`, one per `connect()` of a connected socket).
    pub const DNS_REDIRECTED: u32 = 10;
    /// A DNS answer from the agent's proxy handed to the pod as coming from
    /// the resolver it asked (the source `recvfrom()` reports restored).
    pub const DNS_REPLY_SOURCE_RESTORED: u32 = 11;
    /// A `connect()` sent straight to its same-node destination (the
    /// agent authorized the pair before: `fast_path`), not to the agent.
    pub const FAST_PATH: u32 = 12;
    /// A fast-path connection event the ring buffer had no room for.
    pub const FAST_PATH_EVENTS_LOST: u32 = 13;
    /// Number of counters.
    pub const COUNT: u32 = 14;
    /// Human names, index-aligned with the constants above.
    pub const NAMES: [&str; COUNT as usize] = [
        "redirected",
        "bypass_loopback",
        "bypass_mesh_port",
        "bypass_excluded_port",
        "bypass_agent_socket",
        "bypass_no_ipv6_agent",
        "orig_dst_recorded",
        "map_errors",
        "denied_plaintext_strict",
        "denied_connect_policy",
        "dns_redirected",
        "dns_reply_source_restored",
        "fast_path",
        "fast_path_events_lost",
    ];
}

/// Names of the programs and maps, shared so pins and lookups agree.
pub mod names {
    pub const PROG_CONNECT4: &str = "mesh_connect4";
    pub const PROG_CONNECT6: &str = "mesh_connect6";
    pub const PROG_SOCKOPS: &str = "mesh_sockops";
    pub const PROG_INBOUND: &str = "mesh_inbound";
    // DNS capture; kernel object names hold at most 15 characters.
    /// `cgroup/sendmsg4`: an unconnected UDP socket's DNS query to the agent.
    pub const PROG_DNS_SEND4: &str = "mesh_dns_send4";
    /// `cgroup/recvmsg4`: the answer's source back to the resolver asked.
    pub const PROG_DNS_RECV4: &str = "mesh_dns_recv4";
    /// `cgroup/getpeername4`: a connected DNS socket's peer as connected to.
    pub const PROG_DNS_PEER4: &str = "mesh_dns_peer4";
    pub const PROG_DNS_SEND6: &str = "mesh_dns_send6";
    pub const PROG_DNS_RECV6: &str = "mesh_dns_recv6";
    pub const PROG_DNS_PEER6: &str = "mesh_dns_peer6";
    /// Socket storage: the resolver a redirected DNS socket asked.
    pub const MAP_DNS_ORIG_SERVER: &str = "dns_orig_server";
    pub const MAP_ENROLLED: &str = "enrolled_netns";
    pub const MAP_EXCLUDED: &str = "excluded_ports";
    /// The per-pod-shared LRU that `MAP_ORIG_BY_SOCKET` replaced; its pin
    /// is removed at install.
    pub const MAP_ORIG_BY_COOKIE: &str = "orig_dst_cookie";
    pub const MAP_ORIG_BY_SOCKET: &str = "orig_dst_socket";
    pub const MAP_ORIG_BY_TUPLE: &str = "orig_dst_tuple";
    pub const MAP_CONFIG: &str = "capture_config";
    pub const MAP_STATS: &str = "capture_stats";
    pub const MAP_STRICT: &str = "strict_pods";
    pub const MAP_DENY: &str = "deny_connect";
    pub const MAP_AGENT_IDENTITY: &str = "agent_identity";
    pub const MAP_AGENT_CONNS: &str = "agent_conns";
    pub const MAP_PROBE_PORTS: &str = "probe_ports";
    pub const MAP_FAST_PATH: &str = "fast_path";
    /// Socket storage: marks a pod socket whose `connect()` took the fast path.
    pub const MAP_FAST_PATH_SOCKET: &str = "fast_path_socket";
    pub const MAP_KERNEL_CONN_EVENTS: &str = "kernel_conn_events";
}

#[cfg(feature = "user")]
mod pod_impls {
    // SAFETY: all these types are #[repr(C)], Copy, contain only integers and
    // byte arrays, and have explicit padding, so any bit pattern is valid.
    unsafe impl aya::Pod for super::SockAddr {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnTuple {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Enrollment {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PortExclusion {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CaptureConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DenyKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AgentIdentity {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProbePort {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FastPathKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelConnEvent {}
}
