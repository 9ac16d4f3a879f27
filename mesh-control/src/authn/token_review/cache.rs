//! Review results by token hash, bounded: at most `capacity` entries, each
//! reused for at most the TTL. A full cache drops its oldest entries (the
//! ones closest to expiry), so a flood of new tokens costs the callers seen
//! last nothing, where clearing everything would send every agent's next
//! stream to the API server at once.
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

pub(super) struct ReviewCache<V> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<[u8; 32], (Instant, V)>,
    /// Insertion order; an entry replaced later appears again further back
    /// and its earlier position is skipped (its time no longer matches).
    order: VecDeque<([u8; 32], Instant)>,
}

impl<V: Clone> ReviewCache<V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        ReviewCache {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn insert(&mut self, key: [u8; 32], value: V) {
        let now = Instant::now();
        self.entries.insert(key, (now, value));
        self.order.push_back((key, now));
        while self.entries.len() > self.capacity || self.order.len() > 2 * self.capacity {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|(t, _)| *t == at) {
                self.entries.remove(&old);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_first_and_refreshes_on_reinsert() {
        let mut cache = ReviewCache::new(Duration::from_secs(60), 3);
        for i in 0..3u8 {
            cache.insert([i; 32], i);
        }
        cache.insert([0; 32], 10);
        cache.insert([3; 32], 3);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&[1; 32]), None);
        assert_eq!(cache.get(&[0; 32]), Some(10));
        assert_eq!(cache.get(&[2; 32]), Some(2));
        assert_eq!(cache.get(&[3; 32]), Some(3));
        for i in 0..100u8 {
            cache.insert([0; 32], i);
        }
        assert!(cache.order.len() <= 6);
        assert_eq!(cache.get(&[0; 32]), Some(99));
    }
}
