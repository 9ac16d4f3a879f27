//! The client's pool of HTTP/2 connections, keyed by (source identity,
//! gateway address, expected server identity, socket origin): tunnels of
//! two source pods with one identity never share a connection, since each
//! pod's connection leaves from its own address.
//!
//! A connection is handed out while it has fewer active streams than the
//! limit, its driver task is alive, and it was dialled with the source
//! identity's *current* certificate (after a rotation new streams go to a
//! new connection; old streams finish on the old one). Dropping the pool's
//! handle of a connection lets h2 close it gracefully once its streams end.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::CertificateDer;

use crate::alert::AlertSlot;
use crate::certs::WorkloadCert;
use crate::identity::Identity;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    pub src: Identity,
    pub gateway: SocketAddr,
    pub expected: Identity,
    /// [`crate::SocketOrigin::key`] of the socket's maker, `None` for this
    /// process's own namespace.
    pub origin: Option<u64>,
}

/// One TLS + HTTP/2 connection.
pub(crate) struct Conn {
    pub id: u64,
    pub send: h2::client::SendRequest<Bytes>,
    pub peer_certificate: CertificateDer<'static>,
    /// The source certificate current when this connection was dialled.
    pub src_cert: Arc<WorkloadCert>,
    pub shared: Arc<ConnShared>,
}

#[derive(Debug)]
pub(crate) struct ConnShared {
    active: AtomicUsize,
    closed: AtomicBool,
    last_used: Mutex<Instant>,
    /// A TLS alert the gateway sent, e.g. rejecting our certificate.
    pub alert: Arc<AlertSlot>,
}

impl ConnShared {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnShared {
            active: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
            alert: Arc::default(),
        })
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// Counts one stream against its connection until dropped.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<ConnShared>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Slot {
    conns: Vec<Arc<Conn>>,
    /// Serialises dialling for one key, so concurrent first requests share
    /// one new connection instead of racing to open several.
    dialing: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
pub(crate) struct Pool {
    slots: Mutex<HashMap<PoolKey, Slot>>,
    next_id: AtomicU64,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A usable connection with room for one more stream, if any.
    pub fn checkout(
        &self,
        key: &PoolKey,
        max_streams: usize,
        current: &Arc<WorkloadCert>,
    ) -> Option<(Arc<Conn>, StreamGuard)> {
        let mut slots = self.lock();
        let slot = slots.get_mut(key)?;
        slot.conns
            .retain(|c| !c.shared.is_closed() && Arc::ptr_eq(&c.src_cert, current));
        let conn = slot
            .conns
            .iter()
            .find(|c| c.shared.active.load(Ordering::Acquire) < max_streams)?
            .clone();
        Some((conn.clone(), Self::guard(&conn)))
    }

    fn guard(conn: &Arc<Conn>) -> StreamGuard {
        conn.shared.active.fetch_add(1, Ordering::AcqRel);
        conn.shared.touch();
        StreamGuard(conn.shared.clone())
    }

    pub fn dial_lock(&self, key: &PoolKey) -> Arc<tokio::sync::Mutex<()>> {
        self.lock()
            .entry(key.clone())
            .or_insert_with(|| Slot {
                conns: Vec::new(),
                dialing: Arc::new(tokio::sync::Mutex::new(())),
            })
            .dialing
            .clone()
    }

    /// Adds a freshly dialled connection and takes its first stream.
    pub fn insert(&self, key: &PoolKey, conn: Conn) -> (Arc<Conn>, StreamGuard) {
        let conn = Arc::new(conn);
        let guard = Self::guard(&conn);
        self.lock()
            .entry(key.clone())
            .or_insert_with(|| Slot {
                conns: Vec::new(),
                dialing: Arc::new(tokio::sync::Mutex::new(())),
            })
            .conns
            .push(conn.clone());
        (conn, guard)
    }

    pub fn remove(&self, key: &PoolKey, id: u64) {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(key) {
            slot.conns.retain(|c| c.id != id);
            // Nobody holds or waits on the dial lock: the slot can go.
            if slot.conns.is_empty() && Arc::strong_count(&slot.dialing) == 1 {
                slots.remove(key);
            }
        }
    }

    /// Removes connection `id` if it carried no stream for `idle`; checked
    /// under the lock `checkout` takes, so no stream can sneak in.
    fn remove_if_idle(&self, key: &PoolKey, id: u64, shared: &ConnShared, idle: Duration) -> bool {
        {
            let _slots = self.lock();
            if shared.active.load(Ordering::Acquire) != 0 || shared.idle_for() < idle {
                return false;
            }
            shared.mark_closed();
        }
        self.remove(key, id);
        true
    }

    /// Open connections across all keys.
    pub fn connections(&self) -> usize {
        self.lock().values().map(|s| s.conns.len()).sum()
    }
}

/// Drives one h2 connection until it ends, closing it after `idle` without
/// streams; then drops it from the pool.
pub(crate) fn spawn_driver<F>(
    pool: Weak<Pool>,
    key: PoolKey,
    id: u64,
    shared: Arc<ConnShared>,
    conn: F,
    idle: Option<Duration>,
) where
    F: Future<Output = Result<(), h2::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::pin!(conn);
        let mut idle = idle;
        let result = loop {
            let tick = async {
                match idle {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut conn => break r,
                () = tick => {
                    let Some(pool) = pool.upgrade() else { break Ok(()) };
                    let d = idle.unwrap_or_default();
                    if pool.remove_if_idle(&key, id, &shared, d) {
                        tracing::debug!(id, gateway = %key.gateway, "closing idle HBONE connection");
                        // Keep polling: h2 sends GOAWAY and finishes on its own.
                        idle = None;
                    }
                }
            }
        };
        shared.mark_closed();
        if let Some(pool) = pool.upgrade() {
            pool.remove(&key, id);
        }
        match result {
            Ok(()) => tracing::debug!(id, gateway = %key.gateway, "HBONE connection closed"),
            Err(e) => {
                tracing::debug!(id, gateway = %key.gateway, error = %e, "HBONE connection failed")
            }
        }
    });
}
