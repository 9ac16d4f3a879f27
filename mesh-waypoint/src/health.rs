//! Whether the proxy still works, for a liveness probe: a TCP probe of a
//! port only proves the accept loop runs, not that requests are served.
//! The request path reports every panic it catches here
//! ([`Proxy::handle`](crate::route::Proxy::handle)); the proxy is
//! [`Health::Broken`] while [`PANIC_LIMIT`] or more of them fell within the
//! last [`PANIC_WINDOW`], so a waypoint failing every request gets
//! restarted and one stray panic does not.
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::sync::MutexExt;

/// How far back panics count.
pub const PANIC_WINDOW: Duration = Duration::from_secs(10);
/// Panics within [`PANIC_WINDOW`] that make the proxy broken.
pub const PANIC_LIMIT: usize = 3;

/// What a liveness probe answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Live,
    /// `recent` request panics within [`PANIC_WINDOW`].
    Broken {
        recent: usize,
    },
}

impl Health {
    pub fn is_live(self) -> bool {
        self == Health::Live
    }
}

/// Panics caught in the request path; shared by the proxy (which records)
/// and the admin server (which answers the probe).
#[derive(Debug, Default)]
pub struct Liveness {
    total: AtomicU64,
    recent: Mutex<VecDeque<Instant>>,
}

impl Liveness {
    /// Counts one panic caught while serving a request.
    pub fn record_panic(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut recent = self.recent.lock_unpoisoned();
        prune(&mut recent, now);
        // Only the newest PANIC_LIMIT matter for the verdict.
        if recent.len() == PANIC_LIMIT {
            recent.pop_front();
        }
        recent.push_back(now);
    }

    /// The probe's answer now.
    pub fn check(&self) -> Health {
        let mut recent = self.recent.lock_unpoisoned();
        prune(&mut recent, Instant::now());
        if recent.len() >= PANIC_LIMIT {
            Health::Broken {
                recent: recent.len(),
            }
        } else {
            Health::Live
        }
    }

    /// Panics caught since start (for metrics and logs).
    pub fn panics_total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

fn prune(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= PANIC_WINDOW)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn broken_while_enough_panics_are_recent() {
        let l = Liveness::default();
        assert_eq!(l.check(), Health::Live);
        for _ in 0..PANIC_LIMIT - 1 {
            l.record_panic();
        }
        assert_eq!(l.check(), Health::Live, "a few stray panics");
        l.record_panic();
        assert_eq!(
            l.check(),
            Health::Broken {
                recent: PANIC_LIMIT
            }
        );
        tokio::time::advance(PANIC_WINDOW).await;
        assert_eq!(l.check(), Health::Live, "old panics no longer count");
        assert_eq!(l.panics_total(), PANIC_LIMIT as u64);
    }
}
