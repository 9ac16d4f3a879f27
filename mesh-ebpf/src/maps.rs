//! Every map the capture programs use. BTF-defined, so `bpftool map dump`
//! prints keys and values as named structs. The agent pins them under
//! `/sys/fs/bpf/<instance>/maps/<name>`.
use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, SkStorage},
    macros::btf_map,
};
use mesh_common::{
    stat, AgentIdentity, CaptureConfig, ConnTuple, DenyKey, Enrollment, FastPathKey,
    KernelConnEvent, PortExclusion, ProbePort, SockAddr, AGENT_CONN_ENTRIES, DENY_CONNECT_ENTRIES,
    ENROLLED_ENTRIES, EXCLUDED_PORT_ENTRIES, FAST_PATH_ENTRIES, KERNEL_CONN_EVENTS_BYTES,
    ORIG_DST_ENTRIES, PROBE_PORT_ENTRIES,
};

/// Network-namespace cookie → enrolment of the pod living in it.
#[btf_map(name = "enrolled_netns")]
pub static ENROLLED_NETNS: HashMap<u64, Enrollment, { ENROLLED_ENTRIES as usize }> = HashMap::new();

/// (netns cookie, destination port) pairs a pod keeps off the mesh.
#[btf_map(name = "excluded_ports")]
pub static EXCLUDED_PORTS: HashMap<PortExclusion, u8, { EXCLUDED_PORT_ENTRIES as usize }> =
    HashMap::new();

/// Original destination stored on the pod's socket itself, between
/// `connect()` and establishment. Socket storage has no shared capacity and
/// goes with the socket, so no pod can evict another pod's entries, and a
/// connection that never completes leaves nothing behind.
#[btf_map(name = "orig_dst_socket")]
pub static ORIG_DST_BY_SOCKET: SkStorage<SockAddr> = SkStorage::new();

/// The resolver (address, port 53) an enrolled pod's UDP socket asked,
/// while its DNS goes to the agent's proxy: `dns.rs` reports the answers
/// as coming from it. Socket storage, for the reasons of `orig_dst_socket`.
#[btf_map(name = "dns_orig_server")]
pub static DNS_ORIG_SERVER: SkStorage<SockAddr> = SkStorage::new();

/// Client-side connection tuple → original destination, read (and deleted)
/// by the agent when it accepts the connection.
#[btf_map(name = "orig_dst_tuple")]
pub static ORIG_DST_BY_TUPLE: LruHashMap<ConnTuple, SockAddr, { ORIG_DST_ENTRIES as usize }> =
    LruHashMap::new();

/// Pod addresses (IPv4 mapped) under PeerAuthentication STRICT: new
/// connections must come through the agent.
#[btf_map(name = "strict_pods")]
pub static STRICT_PODS: HashMap<[u8; 16], u8, { ENROLLED_ENTRIES as usize }> = HashMap::new();

/// (pod netns cookie, destination, port or 0) an authorization DENY forbids:
/// `connect()` fails with EPERM. Written by the agent from the policies.
#[btf_map(name = "deny_connect")]
pub static DENY_CONNECT: HashMap<DenyKey, u8, { DENY_CONNECT_ENTRIES as usize }> = HashMap::new();

/// Index 0: the agent's network namespace and cgroup (written at install).
#[btf_map(name = "agent_identity")]
pub static AGENT_IDENTITY: Array<AgentIdentity, 1> = Array::new();

/// Connections the agent's own sockets are opening (tuple as the agent
/// sees it: its address and port, then the pod's), from `connect()` to
/// establishment: the SYNs from the node address a STRICT pod accepts.
/// Only sock_ops writes it, and only for the agent's sockets.
#[btf_map(name = "agent_conns")]
pub static AGENT_CONNS: LruHashMap<ConnTuple, u8, { AGENT_CONN_ENTRIES as usize }> =
    LruHashMap::new();

/// (pod address, port) a STRICT pod takes plaintext on from the node
/// address: the kubelet's probes. Written by the agent.
#[btf_map(name = "probe_ports")]
pub static PROBE_PORTS: HashMap<ProbePort, u8, { PROBE_PORT_ENTRIES as usize }> = HashMap::new();

/// (pod netns cookie, same-node mesh pod address, port) pairs the agent
/// authorized: such a `connect()` is not redirected, the pod talks to the
/// destination directly. Written by the agent after its own decision on
/// one connection of the pair; emptied on every change of the view.
#[btf_map(name = "fast_path")]
pub static FAST_PATH: LruHashMap<FastPathKey, u8, { FAST_PATH_ENTRIES as usize }> =
    LruHashMap::new();

/// Marks a pod socket whose `connect()` took the fast path (the value is
/// unused): sock_ops vouches for it at a STRICT destination and reports
/// its establishment and close.
#[btf_map(name = "fast_path_socket")]
pub static FAST_PATH_SOCKET: SkStorage<u8> = SkStorage::new();

/// Fast-path connections opened and closed, for the agent's metrics,
/// access log and policy re-checks.
#[btf_map(name = "kernel_conn_events")]
pub static KERNEL_CONN_EVENTS: RingBuf<KernelConnEvent, { KERNEL_CONN_EVENTS_BYTES as usize }> =
    RingBuf::new();

/// Index 0: where captured connections go (written by the agent at start).
#[btf_map(name = "capture_config")]
pub static CAPTURE_CONFIG: Array<CaptureConfig, 1> = Array::new();

/// Per-CPU counters, indexed by `mesh_common::stat::*`.
#[btf_map(name = "capture_stats")]
pub static CAPTURE_STATS: PerCpuArray<u64, { stat::COUNT as usize }> = PerCpuArray::new();

/// Adds one to counter `index` on this CPU.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = CAPTURE_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this program on this CPU writes it
        // while it runs (programs are not preempted mid-run on one CPU).
        unsafe { *slot += 1 };
    }
}
