//! Istio's DNS auto-allocation of VIPs for ServiceEntry hosts that have no
//! `spec.addresses`: IPv4 addresses from 240.240.0.0/16 (reserved space,
//! never routed), so a client connecting to the host's name has an
//! address the agent recognises.
//!
//! Stateless and stable: a host's address is a pure function of the set
//! of keys (`<namespace>/<host>`). Each key hashes (FNV-1a, 32 bits) to a
//! *home* slot; a home slot goes to the smallest key (in sorted order)
//! whose home it is. The keys that lose their home (a collision, or an
//! address already used by a pod or Service) then take, in sorted order,
//! the next free slot after it that is nobody's home. So adding an entry
//! never moves another's VIP, except a key whose home the new key takes
//! (it sorts first) or a collision loser whose probe path it crosses:
//! both need a 32-bit hash collision in a 65024-slot pool.
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::{IpAddr, Ipv4Addr},
};

/// Usable slots: 240.240.x.y with y in 1..=254 (addresses ending in .0
/// or .255 confuse some clients, as Istio's allocator also avoids them).
const SLOTS: u32 = 256 * 254;

fn slot_ip(slot: u32) -> Ipv4Addr {
    Ipv4Addr::new(240, 240, (slot / 254) as u8, (slot % 254 + 1) as u8)
}

/// FNV-1a, 32 bits: fixed, unlike std's hashers, so VIPs survive
/// upgrades of the toolchain.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// A VIP for each of `keys` that does not collide with `taken` (addresses
/// of pods and of Services); keys beyond the pool's size get none.
pub(crate) fn allocate(
    keys: &BTreeSet<String>,
    taken: &HashSet<IpAddr>,
) -> BTreeMap<String, Ipv4Addr> {
    let free = |slot: u32| !taken.contains(&IpAddr::V4(slot_ip(slot)));
    let home = |key: &str| fnv1a(key) % SLOTS;
    let homes: BTreeSet<u32> = keys.iter().map(|k| home(k)).collect();
    let mut used: HashSet<u32> = HashSet::new();
    let mut out = BTreeMap::new();
    let mut losers = vec![];
    for key in keys {
        let slot = home(key);
        if free(slot) && used.insert(slot) {
            out.insert(key.clone(), slot_ip(slot));
        } else {
            losers.push(key);
        }
    }
    for key in losers {
        let start = home(key);
        let found = (1..SLOTS)
            .map(|i| (start + i) % SLOTS)
            .find(|slot| !homes.contains(slot) && !used.contains(slot) && free(*slot));
        if let Some(slot) = found {
            used.insert(slot);
            out.insert(key.clone(), slot_ip(slot));
        } else {
            tracing::warn!(%key, "the ServiceEntry VIP pool 240.240.0.0/16 is exhausted: no VIP");
        }
    }
    out
}
