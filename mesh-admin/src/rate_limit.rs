//! Logging at most once per interval: events a remote peer can trigger at
//! will (failed handshakes, refused connections, accept errors) must not
//! let it flood the node's logs.
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use tokio::time::Instant;

/// Decides whether an event is logged now; the ones that are not are
/// counted and reported with the next one that is.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimiter {
    pub const fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log this event, mentioning the `n` suppressed since the
    /// last one logged. `None`: stay quiet (the event is counted).
    pub fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if now.duration_since(at) < self.interval => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_event_per_interval_with_the_count_of_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(limiter.check(), Some(0));
        for _ in 0..5 {
            assert_eq!(limiter.check(), None);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.check(), Some(5));
        assert_eq!(limiter.check(), None);
    }
}
