//! What a run measured: the workers' observations merged, and the summary
//! line (counts, rate, nearest-rank percentiles).
use std::{collections::BTreeMap, time::Duration};

use serde_json::json;

use super::Plan;

/// What the workers observed.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) latencies_us: Vec<u64>,
    pub(super) errors: u64,
    pub(super) status: BTreeMap<u16, u64>,
}

impl Outcome {
    pub(super) fn merge(&mut self, other: Outcome) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        for (k, v) in other.status {
            *self.status.entry(k).or_default() += v;
        }
    }
}

/// How many requests fall due in `duration` at `rate` (k/rate < duration).
pub(super) fn due_within(rate: f64, duration: Duration) -> u64 {
    (duration.as_secs_f64() * rate).ceil() as u64
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Nearest-rank percentile of sorted values: the smallest value with at
/// least `q` percent of all values at or below it. 0 when empty.
pub(super) fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Completed requests per second of wall time.
pub(super) fn rate_per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

#[derive(Debug)]
pub(super) struct Summary {
    requests: u64,
    pub(super) errors: u64,
    pub(super) status: BTreeMap<u16, u64>,
    rps: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    elapsed_s: f64,
    offered_rps: Option<f64>,
    /// Open loop: requests due within the run that were never sent because
    /// every worker was still busy at its end.
    unsent: u64,
    mode: &'static str,
}

impl Summary {
    pub(super) fn new(mut outcome: Outcome, elapsed: Duration, plan: &Plan) -> Self {
        outcome.latencies_us.sort_unstable();
        let l = &outcome.latencies_us;
        let requests = l.len() as u64;
        let unsent = plan.rate.map_or(0, |rate| {
            due_within(rate, plan.duration)
                .min(plan.requests)
                .saturating_sub(requests + outcome.errors)
        });
        Self {
            unsent,
            requests,
            errors: outcome.errors,
            rps: rate_per_second(requests, elapsed),
            p50_us: percentile(l, 50.0),
            p90_us: percentile(l, 90.0),
            p99_us: percentile(l, 99.0),
            max_us: l.last().copied().unwrap_or(0),
            status: outcome.status,
            elapsed_s: elapsed.as_secs_f64(),
            offered_rps: plan.rate,
            mode: if plan.h2 { "h2c" } else { "http/1.1" },
        }
    }

    pub(super) fn to_json(&self) -> serde_json::Value {
        let status: BTreeMap<String, u64> = self
            .status
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "status": status,
            "rps": (self.rps * 10.0).round() / 10.0,
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
            "elapsed_s": self.elapsed_s,
            "offered_rps": self.offered_rps,
            "unsent": self.unsent,
            "protocol": self.mode,
        })
    }
}
