//! Envoy's LEAST_REQUEST with equal weights: power of two choices — two
//! distinct random hosts, the one with fewer active requests wins.
pub fn pick(n: usize, active: impl Fn(usize) -> u64) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        _ => {
            let a = rand::random::<usize>() % n;
            let b = (a + 1 + rand::random::<usize>() % (n - 1)) % n;
            Some(if active(b) < active(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_picks_the_busiest_of_two() {
        let active = |i: usize| if i == 0 { 10 } else { 0 };
        for _ in 0..200 {
            assert_eq!(super::pick(2, active), Some(1));
        }
    }

    #[test]
    fn avoids_the_busiest_of_many() {
        let active = |i: usize| if i == 2 { 100 } else { 1 };
        let mut hits = [0u32; 4];
        for _ in 0..3000 {
            hits[super::pick(4, active).unwrap()] += 1;
        }
        // Host 2 only wins when drawn twice, which P2C never does.
        assert_eq!(hits[2], 0, "{hits:?}");
        assert!(hits[0] > 500 && hits[1] > 500 && hits[3] > 500, "{hits:?}");
    }
}
