//! Connections to the control plane's admin endpoint, from wherever it
//! listens: directly for an address, or through a [`NetnsDialer`] (a
//! thread inside the target's network namespace that creates the
//! sockets) for a namespace name, which reaches the namespace's loopback.
use std::{
    net::{SocketAddr, ToSocketAddrs as _},
    path::Path,
    time::Duration,
};

use tokio::net::TcpStream;

use crate::{
    netns::{NetnsDialer, NetnsError},
    target::{Target, TargetError},
};

/// How long one connection attempt to the admin may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens connections to one admin endpoint.
#[derive(Debug)]
pub enum Dialer {
    /// The admin is reachable from here.
    Direct(String),
    /// The admin listens inside a network namespace.
    Netns(NetnsDialer),
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
    /// A dialer for `target`; for a namespace, its thread enters it now
    /// and the error says so if it cannot.
    pub fn new(target: &Target, netns_dir: &Path) -> Result<Dialer, DialError> {
        match target {
            Target::Addr(addr) => Ok(Dialer::Direct(addr.clone())),
            Target::Netns(name) => match NetnsDialer::new(name, netns_dir) {
                Ok(dialer) => Ok(Dialer::Netns(dialer)),
                Err(NetnsError::Target(e)) => Err(e.into()),
                Err(NetnsError::Spawn { source, .. } | NetnsError::Connect { source, .. }) => {
                    Err(DialError::Connect {
                        target: target.describe(),
                        source,
                    })
                }
                Err(NetnsError::ThreadGone { name }) => Err(DialError::ThreadGone { name }),
            },
        }
    }

    /// Where connections go, for messages.
    pub fn describe(&self) -> String {
        match self {
            Dialer::Direct(addr) => addr.clone(),
            Dialer::Netns(netns) => Target::Netns(netns.name().to_string()).describe(),
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
            Dialer::Netns(netns) => {
                let admin: SocketAddr = crate::target::DEFAULT_ADMIN
                    .parse()
                    .expect("the in-namespace admin address is an IP address");
                match netns.connect(admin, CONNECT_TIMEOUT).await {
                    Ok(stream) => Ok(stream),
                    Err(NetnsError::ThreadGone { name }) => Err(DialError::ThreadGone { name }),
                    Err(NetnsError::Target(e)) => Err(e.into()),
                    Err(NetnsError::Spawn { source, .. } | NetnsError::Connect { source, .. }) => {
                        Err(connect(source))
                    }
                }
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
