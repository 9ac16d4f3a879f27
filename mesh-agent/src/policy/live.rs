//! Open connections to this node's pods, so that a policy change applies to
//! established connections too: after every update of the view, each is
//! evaluated again and those no longer allowed are closed (both sockets shut
//! down, which ends the relay; the pod sees the connection end).
//!
//! The registry keeps a duplicate of each socket's descriptor, so closing
//! never races with the relay dropping its own handle. A connection the
//! kernel carries (the same-node fast path) has no socket of the agent's:
//! it is aborted through sock_diag in the client pod's namespace
//! (capture/sock_destroy.rs).
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use mesh_hbone::Identity;

use super::eval::{Conn, Verdict};
use crate::state::view::MeshView;

struct Entry {
    src_ip: Option<IpAddr>,
    src: Option<Identity>,
    dst: SocketAddr,
    close: Closer,
}

/// How a connection is closed.
enum Closer {
    /// The agent's own sockets (duplicates): shut down both ways.
    Sockets(Vec<OwnedFd>),
    /// A fast-path connection: the client pod's socket `local` → `remote`,
    /// aborted through `diag`, a sock_diag socket in the pod's namespace.
    Kernel {
        diag: Arc<OwnedFd>,
        local: SocketAddr,
        remote: SocketAddr,
    },
}

impl Closer {
    fn close(&self) {
        match self {
            Closer::Sockets(sockets) => {
                for socket in sockets {
                    let _ = nix::sys::socket::shutdown(
                        socket.as_raw_fd(),
                        nix::sys::socket::Shutdown::Both,
                    );
                }
            }
            Closer::Kernel {
                diag,
                local,
                remote,
            } => {
                if let Err(error) = crate::capture::sock_destroy::destroy(diag, *local, *remote) {
                    tracing::warn!(%error, %local, %remote, "cannot abort a fast-path connection");
                }
            }
        }
    }
}

/// Connections to local pods that policy may have to close.
#[derive(Default)]
pub struct LiveConnections {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
    closed: AtomicU64,
}

/// Removes its connection from the registry when dropped.
pub struct LiveGuard {
    id: u64,
    registry: Arc<LiveConnections>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl LiveConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tracks a connection from `src` to the local pod address `dst`,
    /// carried on `sockets` (the pod-side socket, and the client's when the
    /// agent holds it).
    pub fn register(
        self: &Arc<Self>,
        src_ip: Option<IpAddr>,
        src: Option<&Identity>,
        dst: SocketAddr,
        sockets: &[&dyn AsFd],
    ) -> std::io::Result<LiveGuard> {
        let sockets = sockets
            .iter()
            .map(|s| s.as_fd().try_clone_to_owned())
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(self.insert(Entry {
            src_ip,
            src: src.cloned(),
            dst,
            close: Closer::Sockets(sockets),
        }))
    }

    /// Tracks a fast-path connection from the pod socket `local` (identity
    /// `src`) to the local pod address `remote`; `diag` is a sock_diag
    /// socket of the client pod's namespace.
    pub fn register_kernel(
        self: &Arc<Self>,
        src: Option<&Identity>,
        local: SocketAddr,
        remote: SocketAddr,
        diag: Arc<OwnedFd>,
    ) -> LiveGuard {
        self.insert(Entry {
            src_ip: Some(local.ip()),
            src: src.cloned(),
            dst: remote,
            close: Closer::Kernel {
                diag,
                local,
                remote,
            },
        })
    }

    fn insert(self: &Arc<Self>, entry: Entry) -> LiveGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, entry);
        LiveGuard {
            id,
            registry: Arc::clone(self),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Connections closed by policy since start.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Evaluates every open connection under `view`; shuts down those now
    /// denied. Returns how many were closed.
    pub fn enforce(&self, view: &MeshView) -> usize {
        let mut closed = 0;
        let mut entries = self.lock();
        entries.retain(|_, e| {
            let Some(dst) = view.workload_by_ip(e.dst.ip()) else {
                return true;
            };
            let conn = Conn {
                src_ip: e.src_ip,
                src: e.src.as_ref(),
                dst_ip: e.dst.ip(),
                dst_port: e.dst.port(),
            };
            let evaluation = view.policies.evaluate(dst, &conn);
            let Verdict::Deny { policy } = &evaluation.verdict else {
                return true;
            };
            tracing::info!(
                %policy,
                source = %e.src.as_ref().map(ToString::to_string).unwrap_or_default(),
                destination = %e.dst,
                "closing an established connection the new policy denies"
            );
            e.close.close();
            closed += 1;
            false
        });
        self.closed.fetch_add(closed as u64, Ordering::Relaxed);
        closed
    }
}
