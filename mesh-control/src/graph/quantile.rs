//! Quantiles from cumulative histogram buckets, interpolated linearly
//! inside the bucket the rank falls in, as PromQL's `histogram_quantile`
//! does: the lowest bucket starts at 0, a rank in the `+Inf` bucket
//! returns the highest finite bound, and non-monotonic counts (series
//! read at slightly different moments) are evened out first.

/// The `q` quantile (0..=1) of `buckets` (`(le, cumulative count or
/// rate)`, any order). `None` when there is nothing observed or no `+Inf`
/// bucket.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let mut b: Vec<(f64, f64)> = buckets
        .iter()
        .copied()
        .filter(|(le, c)| !le.is_nan() && c.is_finite())
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    b.dedup_by(|later, earlier| {
        // Same bound twice (two label sets summed apart): add them up.
        if later.0 == earlier.0 {
            earlier.1 += later.1;
            true
        } else {
            false
        }
    });
    if b.len() < 2 || b.last()?.0 != f64::INFINITY {
        return None;
    }
    let mut max = 0.0f64;
    for bucket in &mut b {
        max = max.max(bucket.1);
        bucket.1 = max;
    }
    let total = b.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let i = b.iter().position(|(_, c)| *c >= rank)?;
    if i == b.len() - 1 {
        return Some(b[b.len() - 2].0);
    }
    let (end, count) = b[i];
    let (start, below) = if i == 0 {
        (0.0f64.min(end), 0.0)
    } else {
        b[i - 1]
    };
    let in_bucket = count - below;
    if in_bucket <= 0.0 {
        return Some(end);
    }
    Some(start + (end - start) * ((rank - below) / in_bucket))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn interpolates_inside_the_bucket() {
        // 10 below 1ms, 90 between 1 and 5, none above.
        let b = [(1.0, 10.0), (5.0, 100.0), (10.0, 100.0), (INF, 100.0)];
        // rank 50: 40 of 90 into [1, 5].
        let p50 = histogram_quantile(0.5, &b).unwrap();
        assert!((p50 - (1.0 + 4.0 * 40.0 / 90.0)).abs() < 1e-9, "{p50}");
        // rank 5 in the first bucket, which starts at 0.
        assert!((histogram_quantile(0.05, &b).unwrap() - 0.5).abs() < 1e-9);
        // rank 99: 89/90 into [1, 5].
        let p99 = histogram_quantile(0.99, &b).unwrap();
        assert!((p99 - (1.0 + 4.0 * 89.0 / 90.0)).abs() < 1e-9);
    }

    #[test]
    fn inf_bucket_gives_the_highest_finite_bound() {
        let b = [(INF, 10.0), (1.0, 0.0), (5.0, 2.0)];
        assert_eq!(histogram_quantile(0.99, &b), Some(5.0));
    }

    #[test]
    fn nothing_observed_or_no_inf_is_none() {
        assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (INF, 0.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0), (2.0, 4.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[]), None);
    }

    #[test]
    fn non_monotonic_counts_are_evened_out() {
        let b = [(1.0, 10.0), (2.0, 9.0), (INF, 10.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(0.5));
    }
}
