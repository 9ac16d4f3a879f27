//! Envoy's RING_HASH (Ketama-style consistent hashing): every host gets
//! `ceil(minimum_ring_size / hosts)` points on a 64-bit ring, at the XXH64
//! of `"<address>_<i>"`; a request hash goes to the first point at or after
//! it, wrapping around.
use std::net::SocketAddr;

use super::hash::xxh64;

#[derive(Debug)]
pub struct Ring {
    /// (point, host index), sorted by point.
    points: Vec<(u64, usize)>,
}

impl Ring {
    pub fn new(hosts: &[SocketAddr], min_ring_size: u64) -> Self {
        let mut points = Vec::new();
        if !hosts.is_empty() {
            let per_host = min_ring_size.div_ceil(hosts.len() as u64).max(1);
            points.reserve((per_host as usize) * hosts.len());
            for (idx, host) in hosts.iter().enumerate() {
                for i in 0..per_host {
                    points.push((xxh64(format!("{host}_{i}").as_bytes(), 0), idx));
                }
            }
        }
        // Ties (vanishingly rare) resolve by host index, deterministically.
        points.sort_unstable();
        Ring { points }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|(p, _)| *p < hash);
        Some(self.points[i % self.points.len()].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 8080)))
            .collect()
    }

    #[test]
    fn ring_size_and_spread() {
        let ring = Ring::new(&hosts(4), 1024);
        assert_eq!(ring.len(), 1024);
        let mut hits = [0u32; 4];
        for k in 0..8000u64 {
            hits[ring.pick(xxh64(&k.to_le_bytes(), 0)).unwrap()] += 1;
        }
        // 256 points per host keep every share near 25%.
        assert!(hits.iter().all(|h| (1400..2600).contains(h)), "{hits:?}");
    }

    #[test]
    fn same_hash_same_host_and_removal_moves_only_the_removed_hosts_keys() {
        let all = hosts(5);
        let ring = Ring::new(&all, 1024);
        let fewer: Vec<_> = all.iter().copied().filter(|h| h != &all[2]).collect();
        let smaller = Ring::new(&fewer, 1024);
        let mut moved = 0;
        for k in 0..5000u64 {
            let h = xxh64(&k.to_le_bytes(), 0);
            let before = all[ring.pick(h).unwrap()];
            assert_eq!(before, all[ring.pick(h).unwrap()]);
            let after = fewer[smaller.pick(h).unwrap()];
            if before != all[2] {
                // 1024/5 vs 1024/4 points per host: the survivors' first
                // points are the same, more are added; a key may move only
                // to a survivor's new point, which is rare.
                if before != after {
                    moved += 1;
                }
            } else {
                assert_ne!(after, all[2]);
            }
        }
        assert!(moved < 5000 / 4, "{moved} keys of surviving hosts moved");
    }

    #[test]
    fn empty_ring_picks_nothing() {
        assert_eq!(Ring::new(&[], 16).pick(1), None);
    }
}
