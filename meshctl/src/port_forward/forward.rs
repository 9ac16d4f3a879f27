//! One local listener of `meshctl port-forward`: every accepted
//! connection gets a fresh connection to the pod's port (dialed from
//! inside the pod's network namespace) and bytes are copied both ways
//! until both sides are done. A side that finishes sending is passed on
//! as a half-close (the other side still answers), connections beyond the
//! cap are closed on accept, and a connection on which no byte moved for
//! the idle timeout is closed.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::AsyncWriteExt as _,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::idle::{Activity, Tracked};
use crate::netns::NetnsDialer;

/// The forwarder's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections forwarded at once (all listeners); more are closed on
    /// accept.
    pub max_connections: usize,
    /// How long a connection may carry no bytes either way.
    pub idle: Duration,
    /// How long connecting to the pod's port may take.
    pub connect: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            idle: Duration::from_secs(300),
            connect: Duration::from_secs(5),
        }
    }
}

/// Where a listener's connections go.
#[derive(Debug, Clone)]
pub struct Remote {
    pub dialer: Arc<NetnsDialer>,
    /// The address inside the pod's namespace (its loopback and a port).
    pub addr: SocketAddr,
}

/// Serves `listener` until the future is dropped; `slots` is shared by
/// every listener of one command.
pub async fn serve(listener: TcpListener, remote: Remote, slots: Arc<Semaphore>, limits: Limits) {
    crate::accept::serve_capped(listener, slots, limits.max_connections, |client, peer| {
        let remote = remote.clone();
        async move { forward(client, peer, &remote, limits).await }
    })
    .await;
}

/// One connection, start to end.
async fn forward(mut client: TcpStream, peer: SocketAddr, remote: &Remote, limits: Limits) {
    let pod = remote.dialer.name();
    let port = remote.addr.port();
    let upstream = match remote.dialer.connect(remote.addr, limits.connect).await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::warn!(%peer, pod, port, error = %crate::accept::chain(&e), "cannot reach the pod's port; closing the connection");
            let _ = client.shutdown().await;
            return;
        }
    };
    tracing::debug!(%peer, pod, port, "handling connection");
    let activity = Activity::new();
    let mut client = Tracked::new(client, activity.clone());
    let mut upstream = Tracked::new(upstream, activity.clone());
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok((sent, received)) => {
                tracing::debug!(%peer, pod, port, sent, received, "connection closed");
            }
            Err(e) => tracing::debug!(%peer, pod, port, error = %e, "connection ended"),
        },
        () = activity.idle(limits.idle) => {
            tracing::info!(%peer, pod, port, idle_secs = limits.idle.as_secs(), "idle connection closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A namespace dialer for this process's own namespace, so the tests
    /// need neither root nor `ip netns`.
    fn own_namespace() -> (tempfile::TempDir, Arc<NetnsDialer>) {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/proc/self/ns/net", dir.path().join("self")).unwrap();
        let dialer = NetnsDialer::new("self", dir.path()).unwrap();
        (dir, Arc::new(dialer))
    }

    async fn forwarder(upstream: SocketAddr, limits: Limits) -> (tempfile::TempDir, SocketAddr) {
        let (dir, dialer) = own_namespace();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let remote = Remote {
            dialer,
            addr: upstream,
        };
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        tokio::spawn(serve(listener, remote, slots, limits));
        (dir, addr)
    }

    /// Reads to EOF within 5 s.
    async fn read_all(s: &mut TcpStream) -> Vec<u8> {
        let mut out = vec![];
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("the connection ends")
            .unwrap_or(0);
        out
    }

    /// An echo server: sends back what it reads, closes after the peer's EOF.
    async fn echo_server() -> SocketAddr {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = server.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Sends `text`, half-closes, and reads the answer to EOF.
    async fn round_trip(s: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        s.write_all(text).await.unwrap();
        s.shutdown().await.unwrap();
        read_all(s).await
    }

    #[tokio::test]
    async fn a_half_closed_connection_still_gets_its_answer() {
        let (_dir, fwd) = forwarder(echo_server().await, Limits::default()).await;
        let mut client = TcpStream::connect(fwd).await.unwrap();
        assert_eq!(round_trip(&mut client, b"ping").await, b"ping");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_and_slots_come_back() {
        let limits = Limits {
            max_connections: 1,
            idle: Duration::from_secs(60),
            ..Limits::default()
        };
        let (_dir, fwd) = forwarder(echo_server().await, limits).await;
        let mut first = TcpStream::connect(fwd).await.unwrap();
        first.write_all(b"1").await.unwrap();
        let mut one = [0u8; 1];
        first.read_exact(&mut one).await.unwrap();
        // The only slot is taken: the second is closed long before any
        // idle timeout could close it.
        let mut second = TcpStream::connect(fwd).await.unwrap();
        assert!(read_all(&mut second).await.is_empty());
        // The first ends; its slot serves a third.
        assert_eq!(round_trip(&mut first, b"").await, b"");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(fwd).await.unwrap();
        assert_eq!(round_trip(&mut third, b"three").await, b"three");
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_a_talking_one_is_not() {
        let limits = Limits {
            idle: Duration::from_millis(300),
            ..Limits::default()
        };
        let (_dir, fwd) = forwarder(echo_server().await, limits).await;
        let mut silent = TcpStream::connect(fwd).await.unwrap();
        let mut talking = TcpStream::connect(fwd).await.unwrap();
        // Bytes every 100 ms for 900 ms, three idle timeouts long.
        for i in 0..9u8 {
            talking.write_all(&[i]).await.unwrap();
            let mut back = [0u8; 1];
            talking.read_exact(&mut back).await.unwrap();
            assert_eq!(back[0], i);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(read_all(&mut silent).await.is_empty());
        assert_eq!(round_trip(&mut talking, b"still").await, b"still");
    }

    #[tokio::test]
    async fn a_closed_port_closes_the_client() {
        let gone = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let (_dir, fwd) = forwarder(gone, Limits::default()).await;
        let mut client = TcpStream::connect(fwd).await.unwrap();
        assert!(read_all(&mut client).await.is_empty());
    }
}
