//! Stopping a daemon gracefully, the same way in the node agent, the
//! waypoint and the control plane: SIGTERM, SIGINT or `POST
//! /quitquitquit` trigger a [`Drain`]; readiness turns false at once;
//! listeners stop accepting and open connections are asked to finish
//! (each watches [`Drain::subscribe`]); after the drain deadline
//! (`--drain-timeout`) the daemon stops waiting for them and exits 0.
//!
//! The admin and metrics endpoints are not part of the drain: a daemon
//! keeps them until it exits, so a drain can be watched and scraped.
use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::sync::watch;

/// The drain deadline when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a daemon stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `POST /quitquitquit` on the admin endpoint.
    Quit,
    Sigterm,
    Sigint,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Quit => "quitquitquit",
            Reason::Sigterm => "SIGTERM",
            Reason::Sigint => "SIGINT",
        })
    }
}

/// What listeners and connections watch: `true` once draining. Wait for
/// it with [`drained`].
pub type DrainWatch = watch::Receiver<bool>;

/// A one-way switch from running to draining, the readiness that goes
/// with it, and the deadline for what is still open.
#[derive(Debug)]
pub struct Drain {
    draining: watch::Sender<bool>,
    reason: OnceLock<Reason>,
    ready: watch::Sender<bool>,
    timeout: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT)
    }
}

impl Drain {
    /// Running and not yet ready; open connections get `timeout` once
    /// the drain starts.
    pub fn new(timeout: Duration) -> Self {
        Self {
            draining: watch::channel(false).0,
            reason: OnceLock::new(),
            ready: watch::channel(false).0,
            timeout,
        }
    }

    /// Starts the drain and clears readiness. The first reason wins;
    /// later triggers change nothing.
    pub fn trigger(&self, reason: Reason) {
        let _ = self.reason.set(reason);
        self.ready.send_replace(false);
        self.draining.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves with the reason once [`Drain::trigger`] was called (at
    /// once if it was).
    pub async fn triggered(&self) -> Reason {
        drained(&mut self.subscribe()).await;
        self.reason.get().copied().unwrap_or(Reason::Quit)
    }

    /// A watch for listeners and connections: `true` once draining.
    pub fn subscribe(&self) -> DrainWatch {
        self.draining.subscribe()
    }

    /// Ready to take traffic (set once listening; a drain clears it for
    /// good).
    pub fn set_ready(&self) {
        self.ready.send_if_modified(|ready| {
            let set = !*ready && !self.is_triggered();
            if set {
                *ready = true;
            }
            set
        });
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Readiness as a watch, for endpoints that report it.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// How long open connections may finish once the drain started.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `work` (what is still open finishing) for at most the drain
    /// timeout; `None` if the deadline cut it short.
    pub async fn finish<F: std::future::Future>(&self, work: F) -> Option<F::Output> {
        tokio::time::timeout(self.timeout, work).await.ok()
    }

    /// [`settle`] within this drain's timeout.
    pub async fn settle(&self, open: impl FnMut() -> u64) -> u64 {
        settle(self.timeout, open).await
    }

    /// Installs SIGTERM and SIGINT handlers now (the default action,
    /// exiting at once, ends here) and triggers the drain when one
    /// arrives, logging it. If the handlers cannot be installed this
    /// warns: the process then stops only with SIGKILL or
    /// `/quitquitquit`. Needs a Tokio runtime.
    pub fn trigger_on_signals(self: &Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                let drain = Arc::clone(self);
                tokio::spawn(async move {
                    let reason = tokio::select! {
                        _ = term.recv() => Reason::Sigterm,
                        _ = int.recv() => Reason::Sigint,
                    };
                    tracing::info!(?reason, "signal received: {reason}");
                    drain.trigger(reason);
                });
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot install signal handlers; stop with SIGKILL");
            }
        }
    }
}

/// Polls `open` (a count of open connections) until it is zero or
/// `timeout` passed; returns the last count. Polling keeps the
/// connection hot path free of notifications for a once-per-process wait.
pub async fn settle(timeout: Duration, mut open: impl FnMut() -> u64) -> u64 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = open();
        if left == 0 || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resolves once `watch` is (or turns) true, or its [`Drain`] is gone.
/// The watch guard is not held across the wait.
pub async fn drained(watch: &mut DrainWatch) {
    let _ = watch.wait_for(|draining| *draining).await;
}

#[cfg(test)]
mod tests;
