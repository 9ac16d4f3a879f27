//! The peer's HBONE server, as ztunnel's in-pod inbound side behaves: it
//! listens on `<pod IP>:15008` inside the pod's network namespace,
//! presents the pod's certificate to any client (it reads no SNI),
//! requires a client certificate from the mesh root, answers a CONNECT to
//! `<pod IP>:<port>` with 200 and relays the stream to the application.
//! Every tunnel is recorded ([`Seen`]) so a test can check what the
//! client put on the wire.
use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use bytes::Bytes;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

use super::{ca::Identity, tls};

/// What one client showed the server.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The TCP source of the tunnel.
    pub tcp_source: SocketAddr,
    /// The SNI the client sent (ztunnel sends none).
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    pub tls13: bool,
    /// URI SANs of the client certificate.
    pub client_identity: Vec<String>,
    /// The CONNECT's `:authority`, and its other headers.
    pub authority: String,
    pub headers: Vec<(String, String)>,
}

/// A running server; stops when dropped.
pub struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts listening on `addr` inside the namespace at `netns`.
    pub fn start(netns: &Path, addr: SocketAddr, identity: Identity) -> anyhow::Result<Server> {
        let config = Arc::new(tls::server_config(&identity)?);
        let file = std::fs::File::open(netns)?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_seen = seen.clone();
        let thread = std::thread::spawn(move || {
            let started = ready_tx.clone();
            let run = move || -> anyhow::Result<()> {
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = TcpListener::bind(addr).await?;
                    let _ = started.send(Ok(()));
                    tokio::select! {
                        () = accept_loop(listener, config, thread_seen) => {}
                        _ = stopped => {}
                    }
                    Ok(())
                })
            };
            if let Err(e) = run() {
                let _ = ready_tx.send(Err(e));
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("the peer's server did not start")??;
        Ok(Server {
            seen,
            stop: Some(stop),
            thread: Some(thread),
            addr,
        })
    }

    /// Every tunnel so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    // Bounded: a test opens a handful of tunnels.
    for _ in 0..256 {
        let Ok((tcp, peer)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(acceptor, tcp, peer, seen).await {
                eprintln!("ztunnel peer: {peer}: {e:#}");
            }
        });
    }
}

async fn serve_one(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> anyhow::Result<()> {
    let tls = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp))
        .await
        .context("TLS handshake timed out")??;
    let (_, conn) = tls.get_ref();
    let base = Seen {
        tcp_source: peer,
        sni: conn.server_name().map(str::to_string),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        tls13: conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3),
        client_identity: conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| tls::uri_sans(c))
            .unwrap_or_default(),
        authority: String::new(),
        headers: Vec::new(),
    };
    let mut h2 = h2::server::handshake(tls).await?;
    while let Some(request) = h2.accept().await {
        let (request, mut respond) = request?;
        let mut entry = base.clone();
        entry.authority = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        entry.headers = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let target: Option<SocketAddr> = entry.authority.parse().ok();
        seen.lock().expect("not poisoned").push(entry);
        let Some(target) = target.filter(|_| request.method() == http::Method::CONNECT) else {
            respond.send_response(status(400), true)?;
            continue;
        };
        let Ok(app) = TcpStream::connect(target).await else {
            respond.send_response(status(503), true)?;
            continue;
        };
        let send = respond.send_response(status(200), false)?;
        tokio::spawn(relay(request.into_body(), send, app));
    }
    Ok(())
}

fn status(code: u16) -> http::Response<()> {
    http::Response::builder()
        .status(code)
        .body(())
        .expect("a valid response")
}

/// Copies the tunnel's DATA to the application and the application's
/// bytes back, until either side ends.
async fn relay(mut recv: h2::RecvStream, mut send: h2::SendStream<Bytes>, app: TcpStream) {
    let (mut app_read, mut app_write) = app.into_split();
    let up = async move {
        while let Some(Ok(chunk)) = recv.data().await {
            let _ = recv.flow_control().release_capacity(chunk.len());
            if app_write.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = app_write.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match app_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    send.reserve_capacity(n);
                    if send
                        .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = send.send_data(Bytes::new(), true);
    };
    tokio::join!(up, down);
}
