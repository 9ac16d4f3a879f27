//! Choosing the cluster of a `weighted_clusters` route: a uniform draw in
//! `[0, total weight)` falls into one target's band.
use super::dice::Dice;
use crate::config::table::{Clusters, WeightedTarget};

/// The cluster name and, for weighted routes, the chosen target.
pub fn pick<'a>(clusters: &'a Clusters, dice: &Dice) -> (&'a str, Option<&'a WeightedTarget>) {
    match clusters {
        Clusters::One(c) => (c, None),
        Clusters::Weighted(targets) => {
            let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
            let mut draw = dice.below(total);
            for t in targets {
                let w = u64::from(t.weight);
                if draw < w {
                    return (&t.cluster, Some(t));
                }
                draw -= w;
            }
            // Unreachable with total > 0 (the config refuses 0).
            let last = targets.last().expect("weighted_clusters is never empty");
            (&last.cluster, Some(last))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::headers::HeaderEdits;
    use std::sync::Arc;

    fn targets(weights: &[(&str, u32)]) -> Clusters {
        Clusters::Weighted(
            weights
                .iter()
                .map(|(n, w)| WeightedTarget {
                    cluster: Arc::from(*n),
                    weight: *w,
                    request_edits: HeaderEdits::default(),
                    response_edits: HeaderEdits::default(),
                    host_rewrite: None,
                })
                .collect(),
        )
    }

    fn shares(c: &Clusters, n: usize) -> std::collections::HashMap<String, f64> {
        let dice = Dice::seeded(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..n {
            *counts.entry(pick(c, &dice).0.to_string()).or_insert(0usize) += 1;
        }
        counts
            .into_iter()
            .map(|(k, v)| (k, v as f64 / n as f64))
            .collect()
    }

    #[test]
    fn thirty_seventy() {
        let s = shares(&targets(&[("v1", 30), ("v2", 70)]), 100_000);
        assert!((s["v1"] - 0.30).abs() < 0.01, "{s:?}");
        assert!((s["v2"] - 0.70).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn ten_eighty_ten() {
        let s = shares(&targets(&[("v1", 10), ("v2", 80), ("v3", 10)]), 100_000);
        assert!((s["v1"] - 0.10).abs() < 0.01, "{s:?}");
        assert!((s["v2"] - 0.80).abs() < 0.01, "{s:?}");
        assert!((s["v3"] - 0.10).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn zero_weight_never_chosen() {
        let s = shares(&targets(&[("v1", 0), ("v2", 1)]), 10_000);
        assert!(!s.contains_key("v1"));
    }
}
