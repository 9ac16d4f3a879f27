//! Envoy's outlier detection (passive health checking) for one cluster:
//! consecutive 5xx and consecutive gateway failures eject a host at once,
//! subject to `max_ejection_percent`; ejected hosts return at the first
//! interval sweep after `base_ejection_time × times ejected` (capped by
//! `max_ejection_time`) has passed.
//!
//! `split_external_local_origin_errors` is false in what Istio writes, so a
//! connect failure or a reset counts as a 503 from the host. Time is passed
//! in (`now`) by the caller: sweeps run lazily when the detector is used,
//! at the instants they would have run on a timer (`last + k × interval`),
//! which keeps the logic testable with an injected clock.
use std::{collections::HashMap, net::SocketAddr, time::Duration};

use envoy_types::pb::envoy::config::cluster::v3::OutlierDetection;
use mesh_xds::FieldRejection;
use tokio::time::Instant;

use super::cluster::duration;

/// Envoy's default `max_ejection_time`.
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// The parts of `OutlierDetection` the waypoint enforces, Envoy defaults
/// filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierConfig {
    pub consecutive_5xx: u32,
    /// Percent chance (0–100) that reaching `consecutive_5xx` ejects.
    pub enforcing_consecutive_5xx: u32,
    pub consecutive_gateway_failure: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    pub max_ejection_time: Duration,
}

impl OutlierConfig {
    pub fn from_proto(o: &OutlierDetection) -> Result<Self, FieldRejection> {
        let pct = |v: Option<u32>, d: u32, field: &str| -> Result<u32, FieldRejection> {
            let v = v.unwrap_or(d);
            if v > 100 {
                return Err((
                    format!("outlier_detection.{field}"),
                    format!("{v} is over 100"),
                ));
            }
            Ok(v)
        };
        let interval = duration(o.interval.as_ref(), "outlier_detection.interval")?
            .unwrap_or(Duration::from_secs(10));
        if interval.is_zero() {
            return Err((
                "outlier_detection.interval".into(),
                "must be positive".into(),
            ));
        }
        let base = duration(
            o.base_ejection_time.as_ref(),
            "outlier_detection.base_ejection_time",
        )?
        .unwrap_or(Duration::from_secs(30));
        // Envoy: the default, or base_ejection_time when that is larger.
        let max = duration(
            o.max_ejection_time.as_ref(),
            "outlier_detection.max_ejection_time",
        )?
        .unwrap_or_else(|| DEFAULT_MAX_EJECTION_TIME.max(base));
        Ok(OutlierConfig {
            consecutive_5xx: o.consecutive_5xx.map_or(5, |v| v.value),
            enforcing_consecutive_5xx: pct(
                o.enforcing_consecutive_5xx.map(|v| v.value),
                100,
                "enforcing_consecutive_5xx",
            )?,
            consecutive_gateway_failure: o.consecutive_gateway_failure.map_or(5, |v| v.value),
            enforcing_consecutive_gateway_failure: pct(
                o.enforcing_consecutive_gateway_failure.map(|v| v.value),
                0,
                "enforcing_consecutive_gateway_failure",
            )?,
            interval,
            base_ejection_time: base,
            max_ejection_percent: pct(
                o.max_ejection_percent.map(|v| v.value),
                10,
                "max_ejection_percent",
            )?,
            max_ejection_time: max,
        })
    }
}

/// What one attempt to a host came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// Connect failure, reset or timeout (counted as 503).
    LocalFailure,
}

impl Outcome {
    fn status(self) -> u16 {
        match self {
            Outcome::Status(s) => s,
            Outcome::LocalFailure => 503,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct HostState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_at: Option<Instant>,
    /// Ejections "in a row" (the ejection time multiplier).
    num_ejections: u32,
    /// When the host last returned, for the multiplier's decay.
    returned_at: Option<Instant>,
    /// Ejections in total (admin dump, metrics).
    total_ejections: u64,
}

/// Outlier state of the hosts of one cluster.
#[derive(Debug)]
pub struct Detector {
    cfg: OutlierConfig,
    hosts: HashMap<SocketAddr, HostState>,
    last_sweep: Instant,
    /// Changes whenever a host is ejected or returns (or the host list
    /// changes): balancers over the healthy hosts are rebuilt then.
    generation: u64,
    /// Draws in 0..100 for the enforcing percentages (injectable).
    roll: fn() -> u32,
}

fn random_percent() -> u32 {
    rand::random::<u32>() % 100
}

impl Detector {
    pub fn new(cfg: OutlierConfig, now: Instant) -> Self {
        Detector {
            cfg,
            hosts: HashMap::new(),
            last_sweep: now,
            generation: 0,
            roll: random_percent,
        }
    }

    pub fn config(&self) -> &OutlierConfig {
        &self.cfg
    }

    /// Replaces the configuration, keeping host state (a CDS update).
    pub fn set_config(&mut self, cfg: OutlierConfig) {
        self.cfg = cfg;
    }

    /// The cluster's hosts are now `hosts`: state of those that stay is
    /// kept, new ones start clean, gone ones are forgotten.
    pub fn set_hosts(&mut self, hosts: impl IntoIterator<Item = SocketAddr>) {
        let mut next = HashMap::new();
        for h in hosts {
            let state = self.hosts.remove(&h).unwrap_or_default();
            next.insert(h, state);
        }
        self.hosts = next;
        self.generation += 1;
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_ejected(&self, host: &SocketAddr) -> bool {
        self.hosts.get(host).is_some_and(|h| h.ejected_at.is_some())
    }

    pub fn ejected_count(&self) -> usize {
        self.hosts
            .values()
            .filter(|h| h.ejected_at.is_some())
            .count()
    }

    pub fn total_ejections(&self, host: &SocketAddr) -> u64 {
        self.hosts.get(host).map_or(0, |h| h.total_ejections)
    }

    /// Runs the interval sweeps due by `now`; returns the hosts that came
    /// back.
    pub fn advance(&mut self, now: Instant) -> Vec<SocketAddr> {
        let mut returned = Vec::new();
        let interval = self.cfg.interval;
        // After a long idle period the missed sweeps are equivalent to the
        // last few: skip ahead instead of looping over all of them.
        let missed =
            now.saturating_duration_since(self.last_sweep).as_nanos() / interval.as_nanos();
        if missed > 64 {
            let skip = u32::try_from(missed - 64).unwrap_or(u32::MAX);
            self.last_sweep += interval.saturating_mul(skip);
        }
        while self.last_sweep + interval <= now {
            self.last_sweep += interval;
            returned.extend(self.sweep(self.last_sweep));
        }
        returned
    }

    fn sweep(&mut self, at: Instant) -> Vec<SocketAddr> {
        let (base, max, interval) = (
            self.cfg.base_ejection_time,
            self.cfg.max_ejection_time,
            self.cfg.interval,
        );
        let mut returned = Vec::new();
        for (addr, h) in &mut self.hosts {
            match h.ejected_at {
                Some(t) => {
                    let time = base.saturating_mul(h.num_ejections.max(1)).min(max);
                    if t + time <= at {
                        h.ejected_at = None;
                        self.generation += 1;
                        h.returned_at = Some(at);
                        returned.push(*addr);
                        tracing::info!(host = %addr, ejected_for = ?(at - t), "outlier host returned to service");
                    }
                }
                // A host that stayed in service for a whole interval since it
                // returned earns one step of its multiplier back.
                None if h.num_ejections > 0 && h.returned_at.is_none_or(|r| r + interval <= at) => {
                    h.num_ejections -= 1;
                    h.returned_at = Some(at);
                }
                None => {}
            }
        }
        returned
    }

    /// Records an attempt's outcome; true when it ejected the host.
    pub fn report(&mut self, host: SocketAddr, outcome: Outcome, now: Instant) -> bool {
        self.advance(now);
        let total = self.hosts.len();
        let ejected = self.ejected_count();
        let cfg = &self.cfg;
        let Some(h) = self.hosts.get_mut(&host) else {
            return false;
        };
        if h.ejected_at.is_some() {
            return false;
        }
        let status = outcome.status();
        if status < 500 {
            h.consecutive_5xx = 0;
            h.consecutive_gateway = 0;
            return false;
        }
        h.consecutive_5xx += 1;
        if matches!(status, 502..=504) {
            h.consecutive_gateway += 1;
        } else {
            h.consecutive_gateway = 0;
        }
        let reason = if h.consecutive_5xx >= cfg.consecutive_5xx {
            Some(("consecutive_5xx", cfg.enforcing_consecutive_5xx))
        } else if h.consecutive_gateway >= cfg.consecutive_gateway_failure {
            Some((
                "consecutive_gateway_failure",
                cfg.enforcing_consecutive_gateway_failure,
            ))
        } else {
            None
        };
        let Some((reason, enforcing)) = reason else {
            return false;
        };
        // The streak is consumed whether or not it is enforced (Envoy).
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        // At least one host may always be ejected; beyond that, at most
        // max_ejection_percent of the cluster.
        let pct_after = 100 * (ejected + 1) / total.max(1);
        if ejected > 0 && pct_after > cfg.max_ejection_percent as usize {
            tracing::debug!(host = %host, reason, "outlier ejection skipped: max_ejection_percent");
            return false;
        }
        if (self.roll)() >= enforcing {
            return false;
        }
        h.ejected_at = Some(now);
        self.generation += 1;
        h.num_ejections += 1;
        h.total_ejections += 1;
        tracing::info!(host = %host, reason, times = h.num_ejections, "outlier host ejected");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_xds::proto::wkt;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 80))
    }

    /// Seed 002-07: interval 10s, consecutive5xxErrors 1, baseEjectionTime
    /// 3m, maxEjectionPercent 100.
    fn seed_config() -> OutlierConfig {
        OutlierConfig::from_proto(&OutlierDetection {
            consecutive_5xx: Some(wkt::UInt32Value { value: 1 }),
            enforcing_consecutive_5xx: Some(wkt::UInt32Value { value: 100 }),
            interval: Some(wkt::Duration {
                seconds: 10,
                nanos: 0,
            }),
            base_ejection_time: Some(wkt::Duration {
                seconds: 180,
                nanos: 0,
            }),
            max_ejection_percent: Some(wkt::UInt32Value { value: 100 }),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn envoy_defaults() {
        let c = OutlierConfig::from_proto(&OutlierDetection::default()).unwrap();
        assert_eq!(c.consecutive_5xx, 5);
        assert_eq!(c.enforcing_consecutive_5xx, 100);
        assert_eq!(c.enforcing_consecutive_gateway_failure, 0);
        assert_eq!(c.base_ejection_time, Duration::from_secs(30));
        assert_eq!(c.max_ejection_percent, 10);
        assert_eq!(c.max_ejection_time, DEFAULT_MAX_EJECTION_TIME);
        let bad = OutlierDetection {
            max_ejection_percent: Some(wkt::UInt32Value { value: 101 }),
            ..Default::default()
        };
        assert_eq!(
            OutlierConfig::from_proto(&bad).unwrap_err().0,
            "outlier_detection.max_ejection_percent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn seed_002_07_ejects_at_once_and_returns_after_base_time_then_longer() {
        let start = Instant::now();
        let mut d = Detector::new(seed_config(), start);
        d.set_hosts([addr(1), addr(2)]);
        assert!(!d.report(addr(2), Outcome::Status(200), Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        // One 5xx ejects immediately, not at the next sweep.
        assert!(d.report(addr(1), Outcome::Status(500), Instant::now()));
        assert!(d.is_ejected(&addr(1)));
        // Still out just before 3 minutes (sweeps at 10s steps from start).
        tokio::time::advance(Duration::from_secs(178)).await;
        assert!(d.advance(Instant::now()).is_empty());
        assert!(d.is_ejected(&addr(1)));
        // The sweep at 190s (first one after 181s) brings it back.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(d.advance(Instant::now()), vec![addr(1)]);
        assert!(!d.is_ejected(&addr(1)));
        // Fails again right away: second ejection is 2 × 3m, capped by the
        // default max_ejection_time of 300s (Envoy).
        let second = Instant::now();
        assert!(d.report(addr(1), Outcome::LocalFailure, second));
        tokio::time::advance(Duration::from_secs(295)).await;
        d.advance(Instant::now());
        assert!(d.is_ejected(&addr(1)));
        tokio::time::advance(Duration::from_secs(15)).await;
        d.advance(Instant::now());
        assert!(!d.is_ejected(&addr(1)));
        assert_eq!(d.total_ejections(&addr(1)), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn second_ejection_doubles_when_max_ejection_time_allows() {
        let mut cfg = seed_config();
        cfg.max_ejection_time = Duration::from_secs(3600);
        let mut d = Detector::new(cfg, Instant::now());
        d.set_hosts([addr(1)]);
        assert!(d.report(addr(1), Outcome::Status(503), Instant::now()));
        tokio::time::advance(Duration::from_secs(180)).await;
        assert_eq!(d.advance(Instant::now()), vec![addr(1)]);
        assert!(d.report(addr(1), Outcome::Status(503), Instant::now()));
        tokio::time::advance(Duration::from_secs(350)).await;
        d.advance(Instant::now());
        assert!(d.is_ejected(&addr(1)), "6 minutes, not 3");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(d.advance(Instant::now()), vec![addr(1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn multiplier_decays_while_healthy() {
        let mut d = Detector::new(seed_config(), Instant::now());
        d.set_hosts([addr(1)]);
        d.report(addr(1), Outcome::Status(500), Instant::now());
        tokio::time::advance(Duration::from_secs(180)).await;
        d.advance(Instant::now());
        // Healthy for several intervals: back to a 3 minute ejection.
        tokio::time::advance(Duration::from_secs(60)).await;
        d.advance(Instant::now());
        assert!(d.report(addr(1), Outcome::Status(500), Instant::now()));
        tokio::time::advance(Duration::from_secs(190)).await;
        d.advance(Instant::now());
        assert!(!d.is_ejected(&addr(1)));
    }

    #[test]
    fn thresholds_count_consecutive_and_success_resets() {
        let now = Instant::now();
        let mut cfg = seed_config();
        cfg.consecutive_5xx = 3;
        let mut d = Detector::new(cfg, now);
        d.set_hosts([addr(1), addr(2)]);
        assert!(!d.report(addr(1), Outcome::Status(500), now));
        assert!(!d.report(addr(1), Outcome::Status(500), now));
        assert!(!d.report(addr(1), Outcome::Status(404), now));
        assert!(!d.report(addr(1), Outcome::Status(500), now));
        assert!(!d.report(addr(1), Outcome::LocalFailure, now));
        assert!(d.report(addr(1), Outcome::Status(502), now));
    }

    #[test]
    fn gateway_failures_need_enforcing_and_max_percent_caps() {
        let now = Instant::now();
        let cfg = OutlierConfig {
            consecutive_5xx: 100,
            consecutive_gateway_failure: 2,
            enforcing_consecutive_gateway_failure: 100,
            max_ejection_percent: 50,
            ..seed_config()
        };
        let mut d = Detector::new(cfg, now);
        d.set_hosts([addr(1), addr(2), addr(3), addr(4)]);
        assert!(!d.report(addr(1), Outcome::Status(503), now));
        assert!(d.report(addr(1), Outcome::Status(504), now));
        for _ in 0..2 {
            d.report(addr(2), Outcome::Status(502), now);
        }
        assert!(d.is_ejected(&addr(2)), "2 of 4 = 50% allowed");
        for _ in 0..2 {
            d.report(addr(3), Outcome::Status(502), now);
        }
        assert!(!d.is_ejected(&addr(3)), "3 of 4 is over 50%");
        // Not enforced: counted, never ejected.
        let mut off = Detector::new(
            OutlierConfig {
                enforcing_consecutive_gateway_failure: 0,
                ..d.config().clone()
            },
            now,
        );
        off.set_hosts([addr(1)]);
        for _ in 0..5 {
            assert!(!off.report(addr(1), Outcome::Status(503), now));
        }
    }

    #[test]
    fn host_state_survives_updates_for_hosts_that_stay() {
        let now = Instant::now();
        let mut d = Detector::new(seed_config(), now);
        d.set_hosts([addr(1), addr(2)]);
        d.report(addr(1), Outcome::Status(500), now);
        d.set_hosts([addr(1), addr(3)]);
        assert!(d.is_ejected(&addr(1)));
        assert!(!d.is_ejected(&addr(3)));
        assert_eq!(d.ejected_count(), 1);
    }
}
