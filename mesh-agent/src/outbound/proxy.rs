//! Plain TCP proxying of one captured connection: both directions, half-close
//! passed through (EOF on one side shuts down writes on the other), flow
//! control by the sockets themselves (a bounded pipe per direction; a slow
//! reader stops the copy, it never buffers without limit). See relay.rs for
//! how bytes move (small messages copied, bulk spliced).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream};

use crate::state::connections::ConnectionStats;

#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// SO_MARK on upstream sockets, so capture never loops them back.
    pub socket_mark: u32,
    pub buffer_size: usize,
    pub connect_timeout: Duration,
}

/// Closes with RST, so the pod sees "connection reset" rather than a clean EOF
/// it might take for a complete response.
pub fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(&stream, sockopt::Linger, &linger);
    drop(stream);
}

async fn connect(dst: SocketAddr, settings: &ProxySettings) -> std::io::Result<TcpStream> {
    let socket = if dst.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    setsockopt(&socket, sockopt::Mark, &settings.socket_mark)?;
    socket.set_nodelay(true)?;
    tokio::time::timeout(settings.connect_timeout, socket.connect(dst))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

pub async fn run(
    mut client: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    stats: Arc<ConnectionStats>,
    settings: ProxySettings,
) {
    let open = stats.open(peer, dst);
    let _ = client.set_nodelay(true);
    let mut upstream = match connect(dst, &settings).await {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::info!(src = %peer, dst = %dst, %error, "upstream connect failed");
            reset(client);
            stats.finish(open, 0, 0, Some(format!("connect: {error}")));
            return;
        }
    };
    tracing::debug!(id = open.id, src = %peer, dst = %dst, "proxying");
    let result = super::relay::relay(&mut client, &mut upstream, settings.buffer_size).await;
    match result {
        Ok((sent, received)) => {
            tracing::debug!(id = open.id, src = %peer, dst = %dst, sent, received, "closed");
            stats.finish(open, sent, received, None);
        }
        Err(error) => {
            tracing::debug!(id = open.id, src = %peer, dst = %dst, %error, "ended with error");
            stats.finish(open, 0, 0, Some(error.to_string()));
        }
    }
}
