//! A test peer that behaves on the wire as Istio's ztunnel does, written
//! from the protocol facts (no code of ztunnel's): it obtains workload
//! certificates from the CA by impersonation (`ImpersonatedIdentity`
//! metadata, the `clusterid` header), dials HBONE to the destination
//! *pod's* address on 15008 with no TLS SNI from the source pod's network
//! namespace, sends `forwarded`, `baggage` and `traceparent` on its
//! CONNECT, and serves HBONE on a pod's address, recording what each client
//! showed it (SNI, ALPN, TLS version, TCP source, identity, headers).
//!
//! The conformance tests drive our agent, waypoint and control plane
//! against it (`tests/tests/ztunnel_conformance.rs`).
pub mod ca;
pub mod client;
pub mod server;
mod tls;

use std::path::Path;

pub use ca::Identity;

/// The HBONE port (Istio's).
pub const HBONE_PORT: u16 = 15008;

/// Runs `work` on a thread that has entered the network namespace at
/// `netns`, with its own current-thread runtime: every socket it creates
/// belongs to that namespace.
pub fn in_netns<T, F>(netns: &Path, work: impl FnOnce() -> F + Send) -> anyhow::Result<T>
where
    T: Send,
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let file = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(work())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the ztunnel peer's namespace thread panicked"))?
    })
}
