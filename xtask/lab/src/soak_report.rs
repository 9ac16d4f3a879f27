//! What a soak run measured and its verdict: load results classified
//! against the restarts the soak made on purpose, and memory and fd
//! samples per daemon judged for growth. Pure data, unit-tested.
use std::{collections::BTreeMap, time::Duration};

/// A failure this close after a planned restart finished is explained by it
/// (clients still hold connections to the old process).
pub const RESTART_GRACE: Duration = Duration::from_secs(2);

/// Memory may grow this much (first third → last third, medians) before
/// the run counts as leaking.
pub const RSS_GROWTH_LIMIT: f64 = 0.20;

/// One batch of requests, its span on the run's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub path: &'static str,
    pub start: Duration,
    pub end: Duration,
    pub requests: u64,
    pub failures: u64,
}

/// A planned restart of one daemon, from the stop to the new process ready.
#[derive(Debug, Clone, PartialEq)]
pub struct Restart {
    pub daemon: String,
    pub start: Duration,
    pub end: Duration,
}

/// One sample of one daemon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Duration,
    pub rss_kib: u64,
    pub fds: u64,
}

#[derive(Debug, Default)]
pub struct SoakReport {
    pub batches: Vec<Batch>,
    pub restarts: Vec<Restart>,
    pub samples: BTreeMap<String, Vec<Sample>>,
    pub config_writes: u64,
}

/// Growth of one daemon's memory and fds over the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Growth {
    pub daemon: String,
    pub rss_early_kib: u64,
    pub rss_late_kib: u64,
    pub rss_max_kib: u64,
    pub fds_early: u64,
    pub fds_late: u64,
}

impl Growth {
    pub fn rss_ratio(&self) -> f64 {
        self.rss_late_kib as f64 / self.rss_early_kib.max(1) as f64 - 1.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub requests: u64,
    pub failures: u64,
    pub explained: u64,
    pub unexplained: u64,
    pub growth: Vec<Growth>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.unexplained == 0
            && self
                .growth
                .iter()
                .all(|g| g.rss_ratio() <= RSS_GROWTH_LIMIT)
    }
}

impl SoakReport {
    /// Whether a batch overlaps a planned restart (plus its grace).
    fn explained(&self, b: &Batch) -> bool {
        self.restarts
            .iter()
            .any(|r| b.start <= r.end + RESTART_GRACE && r.start <= b.end)
    }

    pub fn verdict(&self) -> Verdict {
        let requests = self.batches.iter().map(|b| b.requests).sum();
        let failures = self.batches.iter().map(|b| b.failures).sum();
        let explained = self
            .batches
            .iter()
            .filter(|b| self.explained(b))
            .map(|b| b.failures)
            .sum();
        let growth = self
            .samples
            .iter()
            .filter_map(|(daemon, s)| growth(daemon, s))
            .collect();
        Verdict {
            requests,
            failures,
            explained,
            unexplained: failures - explained,
            growth,
        }
    }
}

/// Medians of the first and last third of the samples (a restarted
/// daemon's samples start again from its new process).
fn growth(daemon: &str, samples: &[Sample]) -> Option<Growth> {
    if samples.len() < 3 {
        return None;
    }
    let third = samples.len() / 3;
    let median = |s: &[Sample], f: fn(&Sample) -> u64| {
        let mut v: Vec<u64> = s.iter().map(f).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let (early, late) = (&samples[..third], &samples[samples.len() - third..]);
    Some(Growth {
        daemon: daemon.to_string(),
        rss_early_kib: median(early, |s| s.rss_kib),
        rss_late_kib: median(late, |s| s.rss_kib),
        rss_max_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        fds_early: median(early, |s| s.fds),
        fds_late: median(late, |s| s.fds),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn batch(start: u64, end: u64, failures: u64) -> Batch {
        Batch {
            path: "l7",
            start: secs(start),
            end: secs(end),
            requests: 20,
            failures,
        }
    }

    fn samples(rss: &[u64]) -> Vec<Sample> {
        rss.iter()
            .enumerate()
            .map(|(i, &rss_kib)| Sample {
                at: secs(i as u64 * 10),
                rss_kib,
                fds: 40,
            })
            .collect()
    }

    #[test]
    fn failures_during_or_just_after_a_restart_are_explained_others_not() {
        let report = SoakReport {
            batches: vec![
                batch(0, 1, 0),
                batch(9, 11, 3),  // overlaps the restart
                batch(13, 14, 2), // inside the grace after it
                batch(20, 21, 1), // nothing planned then
            ],
            restarts: vec![Restart {
                daemon: "agent node1".into(),
                start: secs(10),
                end: secs(12),
            }],
            ..SoakReport::default()
        };
        let v = report.verdict();
        assert_eq!((v.requests, v.failures), (80, 6));
        assert_eq!((v.explained, v.unexplained), (5, 1));
        assert!(!v.passed());
    }

    #[test]
    fn flat_memory_passes_growing_memory_fails() {
        let mut report = SoakReport::default();
        report
            .samples
            .insert("waypoint".into(), samples(&[100, 110, 105, 108, 104, 109]));
        let v = report.verdict();
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.growth[0].rss_max_kib, 110);

        report
            .samples
            .insert("agent".into(), samples(&[100, 120, 150, 180, 210, 240]));
        let v = report.verdict();
        let agent = v.growth.iter().find(|g| g.daemon == "agent").unwrap();
        assert!(agent.rss_ratio() > RSS_GROWTH_LIMIT, "{agent:?}");
        assert!(!v.passed());
    }

    #[test]
    fn too_few_samples_judge_nothing() {
        let mut report = SoakReport::default();
        report.samples.insert("control".into(), samples(&[1, 1000]));
        assert!(report.verdict().growth.is_empty());
    }
}
