//! Load balancing over the hosts a cluster may use right now (healthy, or
//! all of them in panic mode). A [`Balancer`] is built for one host list;
//! the cluster rebuilds it when that list changes (EDS update, ejection,
//! return), as Envoy rebuilds its ring / table on host set changes.
pub mod hash;
pub mod least_request;
pub mod maglev;
pub mod random;
pub mod ring_hash;
pub mod round_robin;

use std::net::SocketAddr;

use super::cluster::LbPolicy;

#[derive(Debug)]
enum Kind {
    RoundRobin(round_robin::RoundRobin),
    Random,
    LeastRequest,
    RingHash(ring_hash::Ring),
    Maglev(maglev::Maglev),
}

/// A policy's state over one host list.
#[derive(Debug)]
pub struct Balancer {
    hosts: Vec<SocketAddr>,
    kind: Kind,
}

impl Balancer {
    pub fn new(policy: LbPolicy, hosts: Vec<SocketAddr>) -> Self {
        let kind = match policy {
            LbPolicy::RoundRobin => Kind::RoundRobin(Default::default()),
            LbPolicy::Random => Kind::Random,
            LbPolicy::LeastRequest => Kind::LeastRequest,
            LbPolicy::RingHash { min_ring_size } => {
                Kind::RingHash(ring_hash::Ring::new(&hosts, min_ring_size))
            }
            LbPolicy::Maglev { table_size } => {
                Kind::Maglev(maglev::Maglev::new(&hosts, table_size))
            }
        };
        Balancer { hosts, kind }
    }

    pub fn hosts(&self) -> &[SocketAddr] {
        &self.hosts
    }

    /// One pick. `hash` is the route's hash policy result (hash-based
    /// policies without one pick at random, as Envoy); `attempt` > 0 asks
    /// for another choice (a retry avoiding previous hosts); `active` gives
    /// a host's active requests (least request).
    pub fn pick(
        &self,
        hash: Option<u64>,
        attempt: u32,
        active: impl Fn(&SocketAddr) -> u64,
    ) -> Option<SocketAddr> {
        let n = self.hosts.len();
        let hashed = |h: u64| {
            if attempt == 0 {
                h
            } else {
                hash::xxh64(&h.to_le_bytes(), u64::from(attempt))
            }
        };
        let i = match &self.kind {
            Kind::RoundRobin(rr) => rr.pick(n),
            Kind::Random => random::pick(n),
            Kind::LeastRequest => least_request::pick(n, |i| active(&self.hosts[i])),
            Kind::RingHash(r) => r.pick(hashed(hash.unwrap_or_else(rand::random))),
            Kind::Maglev(m) => m.pick(hashed(hash.unwrap_or_else(rand::random))),
        }?;
        self.hosts.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_policies_are_sticky_and_retries_move() {
        let hosts: Vec<SocketAddr> = (1..=8)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 80)))
            .collect();
        for policy in [
            LbPolicy::RingHash {
                min_ring_size: 1024,
            },
            LbPolicy::Maglev { table_size: 65537 },
        ] {
            let b = Balancer::new(policy, hosts.clone());
            let first = b.pick(Some(42), 0, |_| 0).unwrap();
            for _ in 0..10 {
                assert_eq!(b.pick(Some(42), 0, |_| 0), Some(first));
            }
            let moved = (1..6)
                .filter(|a| b.pick(Some(42), *a, |_| 0) != Some(first))
                .count();
            assert!(
                moved > 0,
                "{policy:?}: retries always land on the same host"
            );
        }
    }

    #[test]
    fn empty_host_list_picks_none() {
        let b = Balancer::new(LbPolicy::LeastRequest, vec![]);
        assert_eq!(b.pick(None, 0, |_| 0), None);
    }
}
