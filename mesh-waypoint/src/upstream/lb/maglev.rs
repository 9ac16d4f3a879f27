//! Envoy's MAGLEV: a lookup table of prime size `M` filled round-robin by
//! the hosts, each taking the next free slot of its own permutation
//! (`offset = xxh64(addr, 0) % M`, `skip = xxh64(addr, 1) % (M - 1) + 1`).
//! A request hash picks `table[hash % M]`.
use std::net::SocketAddr;

use super::hash::xxh64;

pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// `size` must be prime (checked when the cluster is read).
    pub fn new(hosts: &[SocketAddr], size: u64) -> Self {
        if hosts.is_empty() {
            return Maglev { table: Vec::new() };
        }
        let m = size as usize;
        let perms: Vec<(usize, usize)> = hosts
            .iter()
            .map(|h| {
                let key = h.to_string();
                let offset = (xxh64(key.as_bytes(), 0) % size) as usize;
                let skip = (xxh64(key.as_bytes(), 1) % (size - 1) + 1) as usize;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; hosts.len()];
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (i, (offset, skip)) in perms.iter().enumerate() {
                let mut c = (offset + next[i] * skip) % m;
                while table[c] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Maglev { table }
    }

    pub fn pick(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize] as usize)
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
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && !is_prime(1000) && !is_prime(1));
    }

    #[test]
    fn table_is_balanced() {
        let m = Maglev::new(&hosts(3), 65537);
        let mut share = [0u32; 3];
        for slot in &m.table {
            share[*slot as usize] += 1;
        }
        // Round-robin filling: shares differ by at most one slot.
        let (min, max) = (share.iter().min().unwrap(), share.iter().max().unwrap());
        assert!(max - min <= 1, "{share:?}");
    }

    #[test]
    fn removal_keeps_most_keys_in_place() {
        let all = hosts(5);
        let before = Maglev::new(&all, 65537);
        let fewer: Vec<_> = all.iter().copied().filter(|h| h != &all[4]).collect();
        let after = Maglev::new(&fewer, 65537);
        let (mut kept, mut total) = (0, 0);
        for k in 0..10_000u64 {
            let h = xxh64(&k.to_le_bytes(), 0);
            let b = all[before.pick(h).unwrap()];
            let a = fewer[after.pick(h).unwrap()];
            assert_ne!(a, all[4]);
            if b != all[4] {
                total += 1;
                kept += usize::from(a == b);
            }
        }
        // Maglev's minimal disruption: nearly all survivors' keys stay.
        assert!(kept * 100 / total >= 90, "kept {kept} of {total}");
    }
}
