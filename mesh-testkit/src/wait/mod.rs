//! Bounded waits: poll (or wake on a watch channel) until a [`Check`]
//! holds, and report what was last observed when it does not.
use std::{
    fmt,
    future::Future,
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::{Attempt, Check};

/// The first pause between attempts; it doubles up to [`MAX_INTERVAL`], so
/// quick conditions are seen quickly and slow ones are not hammered.
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_millis(200);

/// A wait that ended without its state holding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitError {
    /// What was awaited.
    pub what: String,
    pub timeout: Duration,
    /// The state the last attempt observed, or why it gave up.
    pub last: String,
    /// `true` when an attempt gave up ([`Attempt::GiveUp`]) before the timeout.
    pub gave_up: bool,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, timeout, last) = (&self.what, self.timeout, &self.last);
        if self.gave_up {
            write!(
                f,
                "gave up waiting for {what} (timeout {timeout:?}): {last}"
            )
        } else {
            write!(
                f,
                "timed out after {timeout:?} waiting for {what}; last observed: {last}"
            )
        }
    }
}

impl std::error::Error for WaitError {}

fn error(what: &str, timeout: Duration, last: String, gave_up: bool) -> WaitError {
    WaitError {
        what: what.to_string(),
        timeout,
        last,
        gave_up,
    }
}

fn next(interval: Duration) -> Duration {
    (interval * 2).min(MAX_INTERVAL)
}

/// Calls `f` until it reports done, at most `timeout` long (plus the last
/// call); blocks the thread between attempts.
pub fn try_eventually<C: Check>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> C,
) -> Result<C::Value, WaitError> {
    let deadline = Instant::now() + timeout;
    let mut interval = FIRST_INTERVAL;
    loop {
        let last = match f().attempt() {
            Attempt::Done(v) => return Ok(v),
            Attempt::GiveUp(why) => return Err(error(what, timeout, why, true)),
            Attempt::Pending(state) => state,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(error(what, timeout, last, false));
        }
        std::thread::sleep(interval.min(left));
        interval = next(interval);
    }
}

/// [`try_eventually`], panicking with the [`WaitError`].
#[track_caller]
pub fn eventually<C: Check>(what: &str, timeout: Duration, f: impl FnMut() -> C) -> C::Value {
    try_eventually(what, timeout, f).unwrap_or_else(|e| panic!("{e}"))
}

/// Awaits `f()` until it reports done; the whole wait, a hanging attempt
/// included, is bounded by `timeout` (tokio time, so paused clocks work).
pub async fn try_eventually_async<C, Fut>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Fut,
) -> Result<C::Value, WaitError>
where
    C: Check,
    Fut: Future<Output = C>,
{
    let mut last = String::from("no attempt finished");
    let polling = async {
        let mut interval = FIRST_INTERVAL;
        loop {
            match f().await.attempt() {
                Attempt::Done(v) => return Ok(v),
                Attempt::GiveUp(why) => return Err(why),
                Attempt::Pending(state) => last = state,
            }
            tokio::time::sleep(interval).await;
            interval = next(interval);
        }
    };
    match tokio::time::timeout(timeout, polling).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(why)) => Err(error(what, timeout, why, true)),
        Err(_) => Err(error(what, timeout, last, false)),
    }
}

/// [`try_eventually_async`], panicking with the [`WaitError`].
pub async fn eventually_async<C, Fut>(
    what: &str,
    timeout: Duration,
    f: impl FnMut() -> Fut,
) -> C::Value
where
    C: Check,
    Fut: Future<Output = C>,
{
    try_eventually_async(what, timeout, f)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Checks the current value of `rx`, then every new one, until `f` reports
/// done; panics after `timeout`, or when the sender is gone first. Marks
/// the values it saw as seen, as `watch::Receiver::wait_for` does.
pub async fn eventually_watch<T, C: Check>(
    what: &str,
    timeout: Duration,
    rx: &mut watch::Receiver<T>,
    mut f: impl FnMut(&T) -> C,
) -> C::Value {
    let mut last = String::from("no value checked");
    let watching = async {
        loop {
            let attempt = f(&rx.borrow_and_update()).attempt();
            match attempt {
                Attempt::Done(v) => return Ok(v),
                Attempt::GiveUp(why) => return Err(why),
                Attempt::Pending(state) => last = state,
            }
            if rx.changed().await.is_err() {
                return Err("the watch sender was dropped".to_string());
            }
        }
    };
    let result = match tokio::time::timeout(timeout, watching).await {
        Ok(Ok(v)) => return v,
        Ok(Err(why)) => error(what, timeout, why, true),
        Err(_) => error(what, timeout, last, false),
    };
    panic!("{result}")
}

#[cfg(test)]
mod tests;
