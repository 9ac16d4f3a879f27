//! The layout of an agent instance under bpffs. Names say what each object
//! holds, so `ls -R /sys/fs/bpf/<instance>` and `bpftool` explain themselves:
//!
//! ```text
//! <bpffs>/<instance>/maps/enrolled_netns    netns cookie → enrolment
//! <bpffs>/<instance>/maps/excluded_ports    (netns cookie, port) pairs kept off the mesh
//! <bpffs>/<instance>/maps/orig_dst_socket   pod socket → original destination (socket storage)
//! <bpffs>/<instance>/maps/orig_dst_tuple    connection tuple → original destination
//! <bpffs>/<instance>/maps/capture_config    where captured connections go
//! <bpffs>/<instance>/maps/capture_stats     per-CPU counters
//! <bpffs>/<instance>/maps/strict_pods       pod addresses under STRICT mTLS
//! <bpffs>/<instance>/maps/deny_connect      (pod, destination) pairs a DENY policy forbids
//! <bpffs>/<instance>/maps/agent_identity    the agent's netns cookie and cgroup id
//! <bpffs>/<instance>/maps/agent_conns       the agent's connections to pods, until established
//! <bpffs>/<instance>/maps/probe_ports       (STRICT pod, port) the node address may probe
//! <bpffs>/<instance>/maps/dns_orig_server   pod UDP socket → the resolver it asked (socket storage)
//! <bpffs>/<instance>/maps/fast_path         (pod, same-node destination) pairs connecting directly
//! <bpffs>/<instance>/maps/fast_path_socket  pod socket that took the fast path (socket storage)
//! <bpffs>/<instance>/maps/kernel_conn_events fast-path connections opened and closed (ring buffer)
//! <bpffs>/<instance>/progs/mesh_connect4    …and mesh_connect6, mesh_sockops, mesh_inbound,
//!                                           mesh_dns_{send,recv,peer}{4,6}
//! <bpffs>/<instance>/links/mesh_connect4    the cgroup attachments (hold them attached)
//! ```
use std::path::PathBuf;

use mesh_common::names;

use crate::config::PinConfig;

/// The maps the agent pins, in the order `status` shows them.
pub const MAPS: [&str; 15] = [
    names::MAP_ENROLLED,
    names::MAP_EXCLUDED,
    names::MAP_ORIG_BY_SOCKET,
    names::MAP_ORIG_BY_TUPLE,
    names::MAP_CONFIG,
    names::MAP_STATS,
    names::MAP_STRICT,
    names::MAP_DENY,
    names::MAP_AGENT_IDENTITY,
    names::MAP_AGENT_CONNS,
    names::MAP_PROBE_PORTS,
    names::MAP_DNS_ORIG_SERVER,
    names::MAP_FAST_PATH,
    names::MAP_FAST_PATH_SOCKET,
    names::MAP_KERNEL_CONN_EVENTS,
];

/// Pins of maps earlier versions had and this one does not: removed at
/// install (their programs are replaced in the same install).
pub const OBSOLETE_MAPS: [&str; 1] = [names::MAP_ORIG_BY_COOKIE];

/// The programs the agent loads and attaches.
pub const PROGRAMS: [&str; 10] = [
    names::PROG_CONNECT4,
    names::PROG_CONNECT6,
    names::PROG_SOCKOPS,
    names::PROG_INBOUND,
    names::PROG_DNS_SEND4,
    names::PROG_DNS_RECV4,
    names::PROG_DNS_PEER4,
    names::PROG_DNS_SEND6,
    names::PROG_DNS_RECV6,
    names::PROG_DNS_PEER6,
];

#[derive(Debug, Clone)]
pub struct PinLayout {
    pub root: PathBuf,
}

impl PinLayout {
    pub fn new(cfg: &PinConfig) -> Self {
        Self { root: cfg.dir() }
    }
    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }
    pub fn progs_dir(&self) -> PathBuf {
        self.root.join("progs")
    }
    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }
    pub fn prog(&self, name: &str) -> PathBuf {
        self.progs_dir().join(name)
    }
    pub fn link(&self, name: &str) -> PathBuf {
        self.links_dir().join(name)
    }
    pub fn create_dirs(&self) -> std::io::Result<()> {
        for dir in [self.maps_dir(), self.progs_dir(), self.links_dir()] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }
    /// Removing the pins of links detaches the programs; removing the map pins
    /// frees the maps once no program holds them.
    pub fn remove_all(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}
