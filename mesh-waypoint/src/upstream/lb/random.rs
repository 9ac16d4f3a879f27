//! Envoy's RANDOM: a uniformly random available host.
pub fn pick(n: usize) -> Option<usize> {
    (n > 0).then(|| rand::random::<usize>() % n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn spreads_over_all_hosts() {
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[super::pick(4).unwrap()] += 1;
        }
        // Expected 1000 each; 700 is > 9 standard deviations away.
        assert!(counts.iter().all(|c| *c > 700), "{counts:?}");
        assert_eq!(super::pick(0), None);
    }
}
