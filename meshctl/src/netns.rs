//! Sockets inside a named network namespace, used from anywhere.
//!
//! A socket keeps the network namespace it was created in. A
//! [`NetnsDialer`] owns a thread that entered the namespace once; that
//! thread only creates sockets, and the caller connects them on its own
//! runtime — so any address in the namespace (its loopback included) is
//! reachable from a process whose other threads stay in the root
//! namespace, and a slow connect never holds up the others.
use std::{net::SocketAddr, path::Path, sync::mpsc, time::Duration};

use tokio::{
    net::{TcpSocket, TcpStream},
    sync::oneshot,
};

use crate::target::{Target, TargetError};

type Reply = oneshot::Sender<std::io::Result<TcpSocket>>;

/// One socket wanted: IPv4 or IPv6.
struct Request {
    v6: bool,
    reply: Reply,
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot start a thread for network namespace {name}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("the thread of network namespace {name} stopped")]
    ThreadGone { name: String },
    #[error("cannot connect to {addr} in network namespace {name}")]
    Connect {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl NetnsError {
    /// The I/O error of a failed connect (refused, timed out, …).
    pub fn connect_error(&self) -> Option<&std::io::Error> {
        match self {
            NetnsError::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Opens TCP connections from inside one network namespace.
#[derive(Debug)]
pub struct NetnsDialer {
    name: String,
    requests: mpsc::Sender<Request>,
}

impl NetnsDialer {
    /// Starts the namespace's thread; fails (naming the namespace) when
    /// `netns_dir/name` cannot be opened or entered.
    pub fn new(name: &str, netns_dir: &Path) -> Result<NetnsDialer, NetnsError> {
        let (requests, incoming) = mpsc::channel::<Request>();
        let (entered_tx, entered_rx) = mpsc::channel();
        let target = Target::Netns(name.to_string());
        let dir = netns_dir.to_path_buf();
        std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || {
                let entered = target.enter(&dir);
                let ok = entered.is_ok();
                let _ = entered_tx.send(entered);
                if !ok {
                    return;
                }
                // Ends when the dialer (every sender) is gone.
                for request in incoming {
                    let socket = if request.v6 {
                        TcpSocket::new_v6()
                    } else {
                        TcpSocket::new_v4()
                    };
                    let _ = request.reply.send(socket);
                }
            })
            .map_err(|source| NetnsError::Spawn {
                name: name.to_string(),
                source,
            })?;
        match entered_rx.recv() {
            Ok(Ok(())) => Ok(NetnsDialer {
                name: name.to_string(),
                requests,
            }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(NetnsError::ThreadGone {
                name: name.to_string(),
            }),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection to `addr` as seen from inside the namespace, within
    /// `timeout`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpStream, NetnsError> {
        let gone = || NetnsError::ThreadGone {
            name: self.name.clone(),
        };
        let failed = |source| NetnsError::Connect {
            name: self.name.clone(),
            addr,
            source,
        };
        let (reply, socket) = oneshot::channel();
        self.requests
            .send(Request {
                v6: addr.is_ipv6(),
                reply,
            })
            .map_err(|_| gone())?;
        let socket = socket.await.map_err(|_| gone())?.map_err(failed)?;
        match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(stream) => stream.map_err(failed),
            Err(_) => Err(failed(std::io::ErrorKind::TimedOut.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = NetnsDialer::new("gone", dir.path()).unwrap_err();
        assert!(
            matches!(err, NetnsError::Target(TargetError::Open { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains("gone"), "{err}");
    }
}
