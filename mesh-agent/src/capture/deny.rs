//! The `deny_connect` map: (pod netns cookie, destination, port) triples an
//! authorization DENY forbids, refused by `mesh_connect4/6` before any
//! packet leaves the pod. The agent computes the entries (policy/kernel.rs)
//! and this makes the map hold exactly them.
use std::collections::BTreeSet;

use mesh_common::DenyKey;

use super::{
    maps::{self, DenyMap, MapsError},
    pins::PinLayout,
};

pub struct KernelDenies {
    map: DenyMap,
}

/// Orderable form of a key (DenyKey has no Ord: it is a kernel layout).
fn sortable(k: &DenyKey) -> (u64, [u8; 16], u16) {
    (k.netns_cookie, k.addr, k.port)
}

fn key((netns_cookie, addr, port): (u64, [u8; 16], u16)) -> DenyKey {
    DenyKey {
        netns_cookie,
        addr,
        port,
        _pad: [0; 6],
    }
}

impl KernelDenies {
    pub fn open(layout: &PinLayout) -> Result<Self, MapsError> {
        Ok(Self {
            map: maps::deny(layout)?,
        })
    }

    /// Makes the map hold exactly `wanted`; returns how many it holds.
    pub fn set(&mut self, wanted: &[DenyKey]) -> Result<usize, aya::maps::MapError> {
        let wanted: BTreeSet<_> = wanted.iter().map(sortable).collect();
        let present: BTreeSet<_> = self
            .map
            .keys()
            .filter_map(Result::ok)
            .map(|k| sortable(&k))
            .collect();
        for stale in present.difference(&wanted) {
            match self.map.remove(&key(*stale)) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        for new in wanted.difference(&present) {
            self.map.insert(key(*new), 1, 0)?;
        }
        Ok(wanted.len())
    }
}
