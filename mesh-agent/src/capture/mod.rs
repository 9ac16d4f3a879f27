//! Hop ① from userspace: load, attach and pin the capture programs, enrol
//! pods, recover the original destination of captured connections, and
//! make sockets inside enrolled pods' network namespaces (netns_sockets,
//! pod_netns).
//!
//! This is the one module of the agent allowed `unsafe`: the netns cookie
//! needs a raw `getsockopt`.
pub mod bpffs;
pub mod deny;
pub mod ebpf_logs;
pub mod enroll;
pub mod fast_path;
pub mod identity;
pub mod kernel_events;
pub mod loader;
pub mod maps;
pub mod netns;
pub mod netns_sockets;
pub mod orig_dst;
pub mod pins;
pub mod pod_netns;
pub mod probes;
pub mod sock_destroy;
pub mod strict;

/// The compiled `mesh-ebpf` object, built by build.rs with aya-build.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mesh-ebpf"));
