//! Connections to the control plane's admin endpoint, from wherever it
//! listens: directly for an address, or from a thread that lives inside
//! the target's network namespace for a namespace name. A socket keeps
//! the namespace it was created in, so a stream the namespace thread opens
//! reaches the namespace's loopback even when used from any other thread.
use std::{
    net::{SocketAddr, ToSocketAddrs as _},
    path::Path,
    sync::mpsc,
    time::Duration,
};

use tokio::{net::TcpStream, sync::oneshot};

use crate::target::{Target, TargetError};

/// How long one connection attempt to the admin may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Reply = oneshot::Sender<std::io::Result<std::net::TcpStream>>;

/// Opens connections to one admin endpoint.
#[derive(Debug)]
pub enum Dialer {
    /// The admin is reachable from here.
    Direct(String),
    /// The admin listens inside a network namespace: the dialer thread,
    /// which entered it, opens each connection.
    Netns {
        name: String,
        requests: mpsc::Sender<Reply>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("the namespace thread for {name} stopped")]
    ThreadGone { name: String },
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        source: std::io::Error,
    },
}

impl Dialer {
    /// A dialer for `target`; for a namespace, the dialer thread enters it
    /// now and the error says so if it cannot.
    pub fn new(target: &Target, netns_dir: &Path) -> Result<Dialer, DialError> {
        let name = match target {
            Target::Addr(addr) => return Ok(Dialer::Direct(addr.clone())),
            Target::Netns(name) => name.clone(),
        };
        let (requests, incoming) = mpsc::channel::<Reply>();
        let (entered_tx, entered_rx) = mpsc::channel();
        let thread_target = target.clone();
        let dir = netns_dir.to_path_buf();
        std::thread::Builder::new()
            .name(format!("dial-{name}"))
            .spawn(move || {
                let entered = thread_target.enter(&dir);
                let ok = entered.is_ok();
                let _ = entered_tx.send(entered);
                if !ok {
                    return;
                }
                let addr: SocketAddr = thread_target
                    .admin_addr()
                    .parse()
                    .expect("the in-namespace admin address is an IP address");
                // Ends when every sender (the Dialer) is gone.
                for reply in incoming {
                    let _ =
                        reply.send(std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT));
                }
            })
            .map_err(|source| DialError::Connect {
                target: target.describe(),
                source,
            })?;
        match entered_rx.recv() {
            Ok(Ok(())) => Ok(Dialer::Netns { name, requests }),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(DialError::ThreadGone { name }),
        }
    }

    /// Where connections go, for messages.
    pub fn describe(&self) -> String {
        match self {
            Dialer::Direct(addr) => addr.clone(),
            Dialer::Netns { name, .. } => Target::Netns(name.clone()).describe(),
        }
    }

    /// One new connection to the admin endpoint.
    pub async fn connect(&self) -> Result<TcpStream, DialError> {
        let connect = |source| DialError::Connect {
            target: self.describe(),
            source,
        };
        match self {
            Dialer::Direct(addr) => {
                let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(connect)?.collect();
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addrs[..])).await {
                    Ok(stream) => stream.map_err(connect),
                    Err(_) => Err(connect(std::io::ErrorKind::TimedOut.into())),
                }
            }
            Dialer::Netns { name, requests } => {
                let (tx, rx) = oneshot::channel();
                let gone = || DialError::ThreadGone { name: name.clone() };
                requests.send(tx).map_err(|_| gone())?;
                let stream = rx.await.map_err(|_| gone())?.map_err(connect)?;
                stream.set_nonblocking(true).map_err(connect)?;
                TcpStream::from_std(stream).map_err(connect)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn direct_connects_and_names_the_target_when_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let dialer = Dialer::new(&Target::Addr(addr.clone()), Path::new("/nonexistent")).unwrap();
        dialer.connect().await.unwrap();
        drop(listener);
        let err = dialer.connect().await.unwrap_err();
        assert!(matches!(err, DialError::Connect { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("cannot connect to {addr}"));
    }

    #[test]
    fn a_missing_namespace_fails_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let err = Dialer::new(&Target::Netns("gone".into()), dir.path()).unwrap_err();
        assert!(
            matches!(err, DialError::Target(TargetError::Open { .. })),
            "{err:?}"
        );
    }
}
