//! End-to-end harness: a node and its pods as network namespaces joined by a
//! bridge, pod processes in their own cgroup v2 leaves, and the real
//! `mesh-agent` with real eBPF. Used by the tests in `tests/tests/` and by
//! `cargo xtask demo|bench`.
//!
//! Every resource is owned by a guard that removes it on drop, also when a
//! test panics; resources left by a killed run are swept by [`sweep`] on the
//! next start (their names carry the creating process id).
pub mod agent;
pub mod bins;
pub mod bpftool;
pub mod capture;
pub mod cgroup;
pub mod cluster;
pub mod cmd;
pub mod cni;
pub mod dnsmasq;
pub mod envoy;
pub mod fake_apiserver;
pub mod host_setup;
pub mod hosts;
pub mod httpc;
pub mod httpd;
pub mod kubeval;
pub mod local_control;
pub mod netns;
pub mod node;
pub mod openloop;
pub mod pod;
pub mod prometheus;
pub mod pysock;
pub mod socks5;
pub mod sweep;
pub mod topology;
pub mod waypoint;
pub mod xds_fetch;
pub mod ztunnel_peer;
pub mod ztunnel_proc;

pub use agent::Agent;
pub use bins::Binaries;
pub use topology::{Pod, Topology};
/// Versions and install paths of the third-party tools, as `cargo xtask setup`
/// installs them.
pub use xtask::pins;

/// Fails clearly when not root: these tests create namespaces and load eBPF.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "end-to-end tests need root (network namespaces, cgroups, eBPF): run `cargo xtask test` as root"
    );
}
