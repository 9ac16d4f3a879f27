//! One accept loop for every listener of the mesh daemons (admin, probes,
//! metrics, capture, HBONE, plain HTTP), so each gets the same defences:
//!
//! - a cap on open connections: at the cap the listener stops accepting,
//!   and new connections wait in the kernel backlog instead of taking file
//!   descriptors the rest of the process needs;
//! - an optional cap per source IP: a connection over it is closed at once,
//!   so one peer cannot take every slot;
//! - accept errors back off: running out of descriptors (`EMFILE`,
//!   `ENFILE`) or kernel memory sleeps with a doubling, bounded delay
//!   instead of spinning, and is logged at most every few seconds.
//!
//! A connection's slot is its [`Permit`]: keep it alive as long as the
//! connection.
mod backoff;
mod per_source;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use self::{backoff::Backoff, per_source::PerSource};
use crate::rate_limit::LogLimiter;

/// How many connections a listener holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at once; at the cap, accepting pauses.
    pub max_connections: usize,
    /// Open connections from one source IP; `None` for no per-source cap.
    pub max_per_source: Option<usize>,
}

/// How often refusals and accept errors are logged, at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A [`TcpListener`] that accepts under [`Limits`].
pub struct Listener {
    inner: TcpListener,
    what: &'static str,
    total: Arc<Semaphore>,
    per_source: Option<Arc<PerSource>>,
    backoff: Backoff,
    refused_log: LogLimiter,
    error_log: LogLimiter,
}

/// One accepted connection and its slot.
#[derive(Debug)]
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub permit: Permit,
}

/// A connection's slot under the caps; freed on drop.
#[derive(Debug)]
pub struct Permit {
    _total: OwnedSemaphorePermit,
    _source: Option<per_source::SourceSlot>,
}

impl Listener {
    /// `what` names the listener in logs ("admin", "HBONE", ...).
    pub fn new(inner: TcpListener, limits: Limits, what: &'static str) -> Self {
        Listener {
            inner,
            what,
            total: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_source: limits
                .max_per_source
                .map(|max| Arc::new(PerSource::new(max.max(1)))),
            backoff: Backoff::default(),
            refused_log: LogLimiter::new(LOG_EVERY),
            error_log: LogLimiter::new(LOG_EVERY),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The next connection within the caps. Never fails: errors are
    /// logged and retried after a delay. Cancel-safe.
    pub async fn accept(&mut self) -> Accepted {
        loop {
            let total = Arc::clone(&self.total)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (stream, peer) = match self.inner.accept().await {
                Ok(accepted) => {
                    self.backoff.reset();
                    accepted
                }
                Err(error) => {
                    let delay = self.backoff.next();
                    if let Some(suppressed) = self.error_log.check() {
                        tracing::warn!(
                            listener = self.what,
                            %error,
                            exhausted = backoff::is_resource_exhaustion(&error),
                            retry_in = ?delay,
                            suppressed,
                            "accept failed"
                        );
                    }
                    drop(total);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let source = match &self.per_source {
                None => None,
                Some(per_source) => match per_source.claim(peer.ip()) {
                    Some(slot) => Some(slot),
                    None => {
                        if let Some(suppressed) = self.refused_log.check() {
                            tracing::warn!(
                                listener = self.what,
                                %peer,
                                suppressed,
                                "connection refused: too many from this source"
                            );
                        }
                        drop(stream);
                        continue;
                    }
                },
            };
            return Accepted {
                stream,
                peer,
                permit: Permit {
                    _total: total,
                    _source: source,
                },
            };
        }
    }
}

#[cfg(test)]
mod tests;
