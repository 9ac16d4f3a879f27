//! The direct-scrape data source: every `--graph-scrape-interval` the
//! control plane reads `/stats/prometheus` from each connected xDS client
//! (agents, waypoints and gateways serve Istio's metrics on port 15020 of
//! the address they connect from) and from `--graph-scrape-target`s, and
//! keeps up to [`RETENTION`] of snapshots per target.
//!
//! Memory is bounded: at most [`MAX_TARGETS`] targets, [`MAX_SERIES`]
//! series per target (after keeping only the labels the graph needs and
//! summing the rest away), [`MAX_BODY`] bytes per body, and a snapshot
//! is a plain `Vec<f64>` indexed by the target's series table.
//!
//! A rate is `(newest − oldest) / elapsed` between the newest snapshot and
//! the oldest one inside the window. Counter resets (a proxy restarted)
//! are folded in when a scrape is recorded: each snapshot holds the
//! counter's running total of increases, so a value lower than the one
//! before counts as a restart from zero, as PromQL's `rate` treats it.
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{
    exposition,
    http::{self, FetchError},
    series::{parse_le, Metric, RateSample, SeriesKey},
};

/// How long snapshots are kept: the longest window the page offers.
pub const RETENTION: Duration = Duration::from_secs(15 * 60);
/// Targets scraped per round; the rest are reported as skipped.
pub const MAX_TARGETS: usize = 100;
/// Series kept per target (after label reduction).
pub const MAX_SERIES: usize = 2_000;
/// Bytes read per scrape.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// The port Istio's proxies serve `/stats/prometheus` on.
pub const METRICS_PORT: u16 = 15020;
/// The path scraped.
pub const METRICS_PATH: &str = "/stats/prometheus";

/// One series of a target: the metric, the kept labels, and the bucket
/// bound (as bits, so it can be hashed) for histograms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesId {
    metric: Metric,
    key: SeriesKey,
    le: Option<u64>,
}

/// Parses a scrape body into summed counters per [`SeriesId`].
fn counters(body: &str) -> (HashMap<SeriesId, f64>, usize) {
    let parsed = exposition::parse(body, |name| Metric::from_series_name(name).is_some());
    let mut out: HashMap<SeriesId, f64> = HashMap::new();
    let mut bad = parsed.bad_lines;
    for s in parsed.samples {
        let Some(metric) = Metric::from_series_name(s.name) else {
            continue;
        };
        let le = match metric {
            Metric::DurationBucket => {
                match s
                    .labels
                    .iter()
                    .find(|(n, _)| *n == "le")
                    .and_then(|(_, v)| parse_le(v))
                {
                    Some(le) => Some(le.to_bits()),
                    None => {
                        bad += 1;
                        continue;
                    }
                }
            }
            _ => None,
        };
        if !s.value.is_finite() {
            bad += 1;
            continue;
        }
        let key = SeriesKey::from_labels(s.labels.iter().map(|(n, v)| (*n, v.as_str())));
        *out.entry(SeriesId { metric, key, le }).or_default() += s.value;
    }
    (out, bad)
}

/// One recorded scrape: running totals by series index.
#[derive(Debug)]
struct Snapshot {
    at: Instant,
    totals: Vec<f64>,
}

/// What is kept of one target.
#[derive(Debug, Default)]
struct History {
    /// Series index → id; append-only until the table is rebuilt.
    series: Vec<SeriesId>,
    index: HashMap<SeriesId, usize>,
    /// The last raw value of every series (0 when absent from the last scrape).
    last_raw: Vec<f64>,
    snapshots: VecDeque<Snapshot>,
    /// Why the last scrape failed, if it did.
    last_error: Option<String>,
    /// Series of the last scrape that did not fit.
    dropped: usize,
}

impl History {
    /// Records `raw` read at `at`, folding resets into running totals.
    fn record(&mut self, at: Instant, raw: HashMap<SeriesId, f64>) {
        let new_series = raw
            .keys()
            .filter(|id| !self.index.contains_key(*id))
            .count();
        if self.series.len() + new_series > MAX_SERIES {
            // The table is full of series that may be gone (a proxy
            // restarted with other label values): start over.
            *self = History::default();
        }
        let mut dropped = 0;
        let mut current = vec![f64::NAN; self.series.len()];
        for (id, value) in raw {
            let i = match self.index.get(&id) {
                Some(i) => *i,
                None if self.series.len() < MAX_SERIES => {
                    self.series.push(id.clone());
                    self.index.insert(id, self.series.len() - 1);
                    self.last_raw.push(0.0);
                    current.push(f64::NAN);
                    self.series.len() - 1
                }
                None => {
                    dropped += 1;
                    continue;
                }
            };
            current[i] = value;
        }
        let previous = self.snapshots.back().map(|s| &s.totals);
        let mut totals = Vec::with_capacity(self.series.len());
        for (i, raw) in current.iter().enumerate() {
            let before = previous.and_then(|p| p.get(i)).copied().unwrap_or(0.0);
            let total = match (previous.is_some(), raw.is_nan()) {
                // The first scrape is the baseline.
                (false, false) => *raw,
                (_, true) => before,
                (true, false) if *raw >= self.last_raw[i] => before + (raw - self.last_raw[i]),
                // Lower than before: the counter restarted from zero.
                (true, false) => before + raw,
            };
            totals.push(total);
            self.last_raw[i] = if raw.is_nan() { 0.0 } else { *raw };
        }
        self.snapshots.push_back(Snapshot { at, totals });
        self.dropped = dropped;
        self.last_error = None;
    }

    fn trim(&mut self, now: Instant) {
        while self
            .snapshots
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.at) > RETENTION)
        {
            self.snapshots.pop_front();
        }
    }

    /// Per-second increases over `window` ending at `now`, added to `out`.
    fn rates(&self, window: Duration, now: Instant, sink: &mut Vec<RateSample>) {
        let start = now.checked_sub(window);
        let inside = |s: &&Snapshot| start.is_none_or(|start| s.at >= start);
        let (Some(oldest), Some(newest)) =
            (self.snapshots.iter().find(inside), self.snapshots.back())
        else {
            return;
        };
        let elapsed = newest.at.saturating_duration_since(oldest.at).as_secs_f64();
        if elapsed <= 0.0 {
            return;
        }
        for (i, id) in self.series.iter().enumerate() {
            let new = newest.totals.get(i).copied().unwrap_or(0.0);
            let old = oldest.totals.get(i).copied().unwrap_or(0.0);
            let increase = new - old;
            // Buckets keep zero rates: they anchor the interpolation.
            if increase > 0.0 || (id.metric == Metric::DurationBucket && new > 0.0) {
                sink.push(RateSample {
                    metric: id.metric,
                    key: id.key.clone(),
                    le: id.le.map(f64::from_bits),
                    rate: increase.max(0.0) / elapsed,
                });
            }
        }
    }
}

/// Snapshots of every target, shared by the scrape loop and `/graph/data`.
#[derive(Debug, Default)]
pub struct Scraper {
    targets: Mutex<BTreeMap<String, History>>,
    /// Targets over [`MAX_TARGETS`] in the last round.
    skipped: Mutex<usize>,
}

impl Scraper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one scrape of `target` (a body or why it failed).
    pub fn record(&self, target: &str, at: Instant, result: Result<&str, String>) {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let history = targets.entry(target.to_string()).or_default();
        match result {
            Ok(body) => {
                let (raw, bad) = counters(body);
                history.record(at, raw);
                if bad > 0 {
                    history.last_error = Some(format!("{bad} sample lines not understood"));
                }
            }
            Err(error) => history.last_error = Some(error),
        }
        history.trim(at);
    }

    /// Forgets targets that are no longer scraped and have nothing left
    /// inside [`RETENTION`].
    fn forget_stale(&self, now: Instant, current: &[String]) {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets.retain(|name, h| {
            h.trim(now);
            current.contains(name) || !h.snapshots.is_empty()
        });
    }

    /// Rates over `window` ending at `now`, summed over targets, and one
    /// message per target whose last scrape failed or was cut.
    pub fn rates(&self, window: Duration, now: Instant) -> (Vec<RateSample>, Vec<String>) {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        let mut samples = vec![];
        let mut errors = vec![];
        for (name, h) in targets.iter() {
            h.rates(window, now, &mut samples);
            if let Some(e) = &h.last_error {
                errors.push(format!("scrape {name}: {e}"));
            }
            if h.dropped > 0 {
                errors.push(format!(
                    "scrape {name}: {} series over the cap of {MAX_SERIES} not kept",
                    h.dropped
                ));
            }
        }
        let skipped = *self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        if skipped > 0 {
            errors.push(format!(
                "{skipped} scrape targets over the cap of {MAX_TARGETS} not scraped"
            ));
        }
        (samples, errors)
    }

    /// One round: scrapes `targets` (the first [`MAX_TARGETS`]) at once,
    /// each within `timeout`.
    pub async fn scrape_round(&self, mut targets: Vec<String>, timeout: Duration) {
        targets.sort();
        targets.dedup();
        let skipped = targets.len().saturating_sub(MAX_TARGETS);
        targets.truncate(MAX_TARGETS);
        *self.skipped.lock().unwrap_or_else(|e| e.into_inner()) = skipped;
        let scrapes = targets.iter().map(|target| async move {
            let at = Instant::now();
            let result = http::get(target, METRICS_PATH, timeout, MAX_BODY).await;
            (target, at, result)
        });
        for (target, at, result) in futures::future::join_all(scrapes).await {
            match result {
                Ok(body) => match std::str::from_utf8(&body) {
                    Ok(text) => self.record(target, at, Ok(text)),
                    Err(_) => self.record(target, at, Err("body is not UTF-8".into())),
                },
                Err(e) => {
                    let e: FetchError = e;
                    tracing::debug!(%target, error = %e, "graph scrape failed");
                    self.record(target, at, Err(e.to_string()));
                }
            }
        }
        self.forget_stale(Instant::now(), &targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v1: u64, v2: u64, bucket_1ms: u64) -> String {
        format!(
            r#"# TYPE istio_requests_total counter
istio_requests_total{{response_code="200",reporter="waypoint",source_workload="productpage-v1",destination_workload="reviews-v1",source_app="a"}} {v1}
istio_requests_total{{response_code="200",reporter="waypoint",source_workload="productpage-v1",destination_workload="reviews-v1",source_app="b"}} 0
istio_requests_total{{response_code="200",reporter="waypoint",source_workload="productpage-v1",destination_workload="reviews-v2"}} {v2}
istio_request_duration_milliseconds_bucket{{le="1.0",reporter="waypoint",destination_workload="reviews-v1"}} {bucket_1ms}
istio_request_duration_milliseconds_bucket{{le="+Inf",reporter="waypoint",destination_workload="reviews-v1"}} {v1}
mesh_waypoint_other_total 5
"#
        )
    }

    fn rate_of(samples: &[RateSample], workload: &str) -> f64 {
        samples
            .iter()
            .filter(|s| s.metric == Metric::Requests && s.key.destination_workload == workload)
            .map(|s| s.rate)
            .sum()
    }

    #[test]
    fn rates_are_deltas_inside_the_window() {
        let s = Scraper::new();
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        s.record("a:15020", at(0), Ok(&body(100, 10, 50)));
        s.record("a:15020", at(10), Ok(&body(180, 30, 90)));
        s.record("a:15020", at(20), Ok(&body(260, 50, 130)));
        // 60 s window: both deltas, 20 s.
        let (r, errors) = s.rates(Duration::from_secs(60), at(20));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rate_of(&r, "reviews-v1"), 8.0);
        assert_eq!(rate_of(&r, "reviews-v2"), 2.0);
        // A 10 s window: only the last two snapshots.
        let (r, _) = s.rates(Duration::from_secs(10), at(20));
        assert_eq!(rate_of(&r, "reviews-v1"), 8.0);
        let inf = r
            .iter()
            .find(|x| x.metric == Metric::DurationBucket && x.le == Some(f64::INFINITY))
            .unwrap();
        assert_eq!(inf.rate, 8.0);
        let one = r.iter().find(|x| x.le == Some(1.0)).unwrap();
        assert_eq!(one.rate, 4.0);
    }

    #[test]
    fn counter_resets_count_from_zero() {
        let s = Scraper::new();
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        s.record("a:15020", at(0), Ok(&body(100, 10, 0)));
        s.record("a:15020", at(10), Ok(&body(150, 10, 0)));
        // Restarted: 20 since the restart.
        s.record("a:15020", at(20), Ok(&body(20, 10, 0)));
        let (r, _) = s.rates(Duration::from_secs(60), at(20));
        assert_eq!(rate_of(&r, "reviews-v1"), (50.0 + 20.0) / 20.0);
        assert_eq!(rate_of(&r, "reviews-v2"), 0.0);
    }

    #[test]
    fn a_series_appearing_later_counts_from_zero() {
        let s = Scraper::new();
        let t0 = Instant::now();
        s.record("a:15020", t0, Ok("other 1\n"));
        s.record("a:15020", t0 + Duration::from_secs(10), Ok(&body(30, 0, 0)));
        let (r, _) = s.rates(Duration::from_secs(60), t0 + Duration::from_secs(10));
        assert_eq!(rate_of(&r, "reviews-v1"), 3.0);
    }

    #[test]
    fn failures_are_reported_and_old_snapshots_dropped() {
        let s = Scraper::new();
        let t0 = Instant::now();
        s.record("a:15020", t0, Ok(&body(1, 1, 1)));
        s.record(
            "a:15020",
            t0 + Duration::from_secs(1),
            Err("connect: refused".into()),
        );
        let (r, errors) = s.rates(Duration::from_secs(60), t0 + Duration::from_secs(1));
        assert!(r.is_empty());
        assert_eq!(errors, vec!["scrape a:15020: connect: refused".to_string()]);
        s.record(
            "a:15020",
            t0 + RETENTION + Duration::from_secs(2),
            Ok(&body(5, 5, 5)),
        );
        let h = s.targets.lock().unwrap();
        assert_eq!(h["a:15020"].snapshots.len(), 1);
    }

    #[test]
    fn series_are_capped() {
        let mut text = String::new();
        for i in 0..MAX_SERIES + 5 {
            text.push_str(&format!(
                "istio_tcp_sent_bytes_total{{source_workload=\"w{i}\"}} 1\n"
            ));
        }
        let s = Scraper::new();
        s.record("a:15020", Instant::now(), Ok(&text));
        let (_, errors) = s.rates(Duration::from_secs(60), Instant::now());
        assert!(
            errors.iter().any(|e| e.contains("5 series over the cap")),
            "{errors:?}"
        );
    }
}
