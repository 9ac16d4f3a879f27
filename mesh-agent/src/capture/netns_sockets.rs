//! The netns socket factory: one thread that makes sockets inside pods'
//! network namespaces. A socket belongs to the namespace it was created in
//! for its whole life, so a listener made here serves inside the pod (its
//! `:15008`), and a connection made from a socket made here leaves from
//! the pod's address — while tokio drives both from the agent's threads.
//!
//! The thread enters the pod's namespace (`setns`), makes the socket and
//! returns to the agent's namespace before the next request; no other
//! thread of the agent ever changes namespace. If it cannot return, it
//! stops (every later request fails with [`SocketsError::Gone`]) rather
//! than make a socket in the wrong namespace.
use std::{
    fs::File,
    io,
    net::SocketAddr,
    os::fd::{AsFd, OwnedFd},
    sync::{mpsc, Arc},
};

use nix::{
    sched::{setns, CloneFlags},
    sys::socket::{
        bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
        SockaddrStorage,
    },
};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum SocketsError {
    #[error("the netns socket factory thread is gone")]
    Gone,
    #[error("cannot start the netns socket factory thread")]
    Start(#[source] io::Error),
    #[error("cannot enter network namespace of {what}")]
    Enter { what: String, source: nix::Error },
    #[error("{what} in the pod's network namespace failed")]
    Socket { what: String, source: io::Error },
}

impl From<SocketsError> for io::Error {
    fn from(e: SocketsError) -> Self {
        match e {
            SocketsError::Socket { source, .. } => source,
            other => io::Error::other(other),
        }
    }
}

/// What the thread makes.
enum Make {
    /// A listening TCP socket bound to the address.
    Listener { addr: SocketAddr, backlog: i32 },
    /// An unbound, unconnected TCP socket of the address's family.
    Stream { family: SocketAddr },
    /// Nothing: the namespace's cookie.
    Cookie,
    /// A sock_diag netlink socket (sock_destroy.rs).
    SockDiag,
}

enum Made {
    Fd(OwnedFd),
    Cookie(u64),
}

struct Job {
    netns: Arc<File>,
    what: Make,
    reply: oneshot::Sender<Result<Made, SocketsError>>,
}

/// Handle on the factory thread; cheap to clone. The thread ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct NetnsSockets {
    tx: mpsc::Sender<Job>,
}

impl NetnsSockets {
    /// Starts the thread; it remembers the caller's namespace as home.
    pub fn start() -> Result<Self, SocketsError> {
        let home = File::open("/proc/thread-self/ns/net").map_err(SocketsError::Start)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("netns-sockets".into())
            .spawn(move || serve(home, rx))
            .map_err(SocketsError::Start)?;
        Ok(Self { tx })
    }

    async fn ask(&self, netns: &Arc<File>, what: Make) -> Result<Made, SocketsError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job {
                netns: Arc::clone(netns),
                what,
                reply,
            })
            .map_err(|_| SocketsError::Gone)?;
        answer.await.map_err(|_| SocketsError::Gone)?
    }

    /// A tokio listener on `addr` inside `netns`.
    pub async fn listener(
        &self,
        netns: &Arc<File>,
        addr: SocketAddr,
        backlog: i32,
    ) -> Result<tokio::net::TcpListener, SocketsError> {
        let Made::Fd(fd) = self.ask(netns, Make::Listener { addr, backlog }).await? else {
            unreachable!("a listener request answers with a descriptor")
        };
        tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd)).map_err(|source| {
            SocketsError::Socket {
                what: format!("registering the listener on {addr}"),
                source,
            }
        })
    }

    /// An unconnected, non-blocking TCP socket inside `netns`, of the
    /// family of `family` (connect it with tokio's `TcpSocket`).
    pub async fn stream(
        &self,
        netns: &Arc<File>,
        family: SocketAddr,
    ) -> Result<std::net::TcpStream, SocketsError> {
        let Made::Fd(fd) = self.ask(netns, Make::Stream { family }).await? else {
            unreachable!("a socket request answers with a descriptor")
        };
        Ok(std::net::TcpStream::from(fd))
    }

    /// A sock_diag socket inside `netns`, to destroy its TCP sockets.
    pub async fn sock_diag(&self, netns: &Arc<File>) -> Result<OwnedFd, SocketsError> {
        let Made::Fd(fd) = self.ask(netns, Make::SockDiag).await? else {
            unreachable!("a sock_diag request answers with a descriptor")
        };
        Ok(fd)
    }

    /// The cookie of `netns` (the enrolment map's key).
    pub async fn cookie(&self, netns: &Arc<File>) -> Result<u64, SocketsError> {
        match self.ask(netns, Make::Cookie).await? {
            Made::Cookie(cookie) => Ok(cookie),
            Made::Fd(_) => unreachable!("a cookie request answers with a cookie"),
        }
    }
}

/// The thread's loop: enter, make, return home.
fn serve(home: File, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        if let Err(source) = setns(job.netns.as_fd(), CloneFlags::CLONE_NEWNET) {
            let _ = job.reply.send(Err(SocketsError::Enter {
                what: describe(&job.what),
                source,
            }));
            continue;
        }
        let made = make(&job.what);
        if let Err(error) = setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!(%error, "netns socket factory cannot return to the agent's namespace; stopping it");
            let _ = job.reply.send(Err(SocketsError::Gone));
            return;
        }
        let _ = job.reply.send(made);
    }
}

fn describe(what: &Make) -> String {
    match what {
        Make::Listener { addr, .. } => format!("a listener on {addr}"),
        Make::Stream { family } => format!("a socket towards {family}"),
        Make::Cookie => "a cookie lookup".into(),
        Make::SockDiag => "a sock_diag socket".into(),
    }
}

fn make(what: &Make) -> Result<Made, SocketsError> {
    let fail = |source: nix::Error| SocketsError::Socket {
        what: describe(what),
        source: source.into(),
    };
    let family = |addr: &SocketAddr| match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    match what {
        Make::Cookie => super::netns::current_cookie()
            .map(Made::Cookie)
            .map_err(|source| SocketsError::Socket {
                what: describe(what),
                source,
            }),
        Make::SockDiag => super::sock_destroy::diag_socket()
            .map(Made::Fd)
            .map_err(|source| SocketsError::Socket {
                what: describe(what),
                source,
            }),
        Make::Stream { family: addr } => socket(family(addr), SockType::Stream, flags, None)
            .map(Made::Fd)
            .map_err(fail),
        Make::Listener { addr, backlog } => {
            let fd = socket(family(addr), SockType::Stream, flags, None).map_err(fail)?;
            setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(fail)?;
            if addr.is_ipv6() {
                setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(fail)?;
            }
            bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &SockaddrStorage::from(*addr),
            )
            .map_err(fail)?;
            let backlog = Backlog::new(*backlog).unwrap_or(Backlog::MAXCONN);
            listen(&fd, backlog).map_err(fail)?;
            Ok(Made::Fd(fd))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_of_the_own_namespace_work_and_the_thread_returns_home() {
        let sockets = NetnsSockets::start().unwrap();
        let here = Arc::new(File::open("/proc/self/ns/net").unwrap());
        let cookie = sockets.cookie(&here).await.unwrap();
        assert_eq!(cookie, crate::capture::netns::current_cookie().unwrap());
        let listener = sockets
            .listener(&here, "127.0.0.1:0".parse().unwrap(), 16)
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = sockets.stream(&here, addr).await.unwrap();
        let socket = tokio::net::TcpSocket::from_std_stream(socket);
        let (client, accepted) = tokio::join!(socket.connect(addr), listener.accept());
        assert_eq!(
            client.unwrap().local_addr().unwrap(),
            accepted.unwrap().1,
            "the accepted peer is the socket the factory made"
        );
    }

    #[tokio::test]
    async fn a_missing_namespace_file_is_an_error_not_a_panic() {
        let sockets = NetnsSockets::start().unwrap();
        // Not a namespace file: setns refuses it.
        let not_netns = Arc::new(File::open("/proc/self/status").unwrap());
        let err = sockets.cookie(&not_netns).await.unwrap_err();
        assert!(matches!(err, SocketsError::Enter { .. }), "{err}");
        // The thread is still there.
        let here = Arc::new(File::open("/proc/self/ns/net").unwrap());
        sockets.cookie(&here).await.unwrap();
    }
}
