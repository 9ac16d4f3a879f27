//! Hop ① from userspace: load, attach and pin the capture programs, enrol
//! pods, and recover the original destination of captured connections.
//!
//! This is the one module of the agent allowed `unsafe`: the netns cookie
//! needs a raw `getsockopt`.
pub mod bpffs;
pub mod deny;
pub mod ebpf_logs;
pub mod enroll;
pub mod identity;
pub mod loader;
pub mod maps;
pub mod netns;
pub mod orig_dst;
pub mod pins;
pub mod probes;
pub mod strict;

/// The compiled `mesh-ebpf` object, built by build.rs with aya-build.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mesh-ebpf"));
