//! Stopping the agent gracefully, for `POST /quitquitquit` and SIGTERM or
//! SIGINT alike: stop accepting on the data-path listeners, report not
//! ready, let open connections finish for up to `--drain-timeout`, exit 0.
//! The admin and metrics endpoints keep answering until the process exits,
//! so a drain can be watched (`/stats/connections`) and scraped.
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use crate::state::connections::ConnectionStats;

/// Why the agent stops, once it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Quit,
    Sigterm,
    Sigint,
}

/// A one-way switch from running to draining, and readiness with it.
pub struct Shutdown {
    tx: watch::Sender<Option<Reason>>,
    ready: AtomicBool,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            tx: watch::channel(None).0,
            ready: AtomicBool::new(false),
        }
    }
}

impl Shutdown {
    /// The first reason wins; later triggers change nothing.
    pub fn trigger(&self, reason: Reason) {
        self.ready.store(false, Ordering::Relaxed);
        self.tx.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(reason);
            }
            first
        });
    }

    pub fn is_triggered(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// Resolves once [`Shutdown::trigger`] was called (at once if it was).
    pub async fn triggered(&self) -> Reason {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(reason) = *rx.borrow_and_update() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen.
                return Reason::Quit;
            }
        }
    }

    /// Ready to take traffic (set once listening; cleared by a trigger).
    pub fn set_ready(&self) {
        if !self.is_triggered() {
            self.ready.store(true, Ordering::Relaxed);
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// Stops the accept loops (the listeners close when their task is gone;
/// connections they spawned run on) and waits up to `timeout` for open
/// connections to finish. Returns how many were still open.
pub async fn stop_and_drain(
    accepting: Vec<JoinHandle<()>>,
    stats: &ConnectionStats,
    timeout: Duration,
) -> u64 {
    for task in &accepting {
        task.abort();
    }
    for task in accepting {
        let _ = task.await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let active = stats.totals().active;
        if active == 0 || tokio::time::Instant::now() >= deadline {
            return active;
        }
        // Polling: finishing a connection would otherwise have to notify,
        // on the hot path, for the sake of a once-per-process wait.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for SIGTERM or SIGINT and turns it into a shutdown trigger.
pub async fn on_signals(shutdown: std::sync::Arc<Shutdown>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let reason = tokio::select! {
        _ = term.recv() => Reason::Sigterm,
        _ = int.recv() => Reason::Sigint,
    };
    tracing::info!(?reason, "signal received");
    shutdown.trigger(reason);
}
