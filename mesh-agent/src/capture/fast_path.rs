//! The `fast_path` map: (pod netns cookie, same-node mesh pod address,
//! port) pairs the agent authorized. `mesh_connect4/6` lets such a
//! `connect()` go to the destination itself instead of the agent, so the
//! bytes never leave the kernel's TCP path between the two pods (no
//! userspace hop, no second connection).
//!
//! The agent writes a pair after deciding one connection of it
//! (outbound/proxy.rs) and only when the decision is a pure function of
//! the pair under the current view: a mesh source, a pod-addressed
//! destination on this node, ALLOW, no AUDIT or dry-run policy involved.
//! Every view change and every change of the enrolled pods empties the map
//! (mesh/policy_sync.rs) before new decisions are cached, so a cached pair
//! never outlives the configuration that allowed it; connections already
//! open are re-checked like carried ones (outbound/kernel_carried.rs).
use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex,
    },
};

use mesh_common::FastPathKey;

use super::{
    maps::{self, FastPathMap, MapsError},
    pins::PinLayout,
};

pub struct FastPath {
    map: Mutex<FastPathMap>,
    /// Pairs written since the last clear (an upper bound: LRU eviction
    /// may have dropped some), so clearing an empty map costs nothing.
    written: AtomicUsize,
    /// The view generation the map was last cleared for: only decisions
    /// made on that view may be cached (a decision on an older view that
    /// finishes after the clear is not).
    generation: AtomicU64,
}

/// The key of `netns_cookie`'s pod connecting to `dst`.
pub fn key(netns_cookie: u64, dst: SocketAddr) -> FastPathKey {
    let addr = match dst.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6, |v4| v4.to_ipv6_mapped()),
    };
    FastPathKey {
        netns_cookie,
        addr: addr.octets(),
        port: dst.port(),
        _pad: [0; 6],
    }
}

impl FastPath {
    /// Opens the pinned map and empties it: pairs a previous agent wrote
    /// were decided on a view this one has not seen.
    pub fn open(layout: &PinLayout) -> Result<Self, MapsError> {
        let fast = Self {
            map: Mutex::new(maps::fast_path(layout)?),
            written: AtomicUsize::new(1),
            generation: AtomicU64::new(0),
        };
        fast.clear(0);
        Ok(fast)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FastPathMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets the pod of `netns_cookie` connect to `dst` directly from now
    /// on, if the decision was made on view `generation`, the one the map
    /// was last cleared for; otherwise does nothing.
    pub fn allow(&self, generation: u64, netns_cookie: u64, dst: SocketAddr) {
        let mut map = self.lock();
        if self.generation.load(Ordering::Relaxed) != generation {
            return;
        }
        match map.insert(key(netns_cookie, dst), 1, 0) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            // Not cached: the pair keeps going through the agent.
            Err(error) => tracing::debug!(%error, %dst, "cannot cache a fast-path pair"),
        }
    }

    /// Forgets every pair, and takes decisions made on view `generation`
    /// from now on; returns how many pairs were removed.
    pub fn clear(&self, generation: u64) -> usize {
        let mut map = self.lock();
        self.generation.store(generation, Ordering::Relaxed);
        if self.written.swap(0, Ordering::Relaxed) == 0 {
            return 0;
        }
        let keys: Vec<FastPathKey> = map.keys().filter_map(Result::ok).collect();
        let mut removed = 0;
        for k in &keys {
            if map.remove(k).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}
