//! The plain HTTP listener (`--http-addr`, Envoy's 0.0.0.0:15080): the
//! same routes, virtual host chosen by `Host`, no peer identity.
use std::sync::Arc;

use tokio::{net::TcpListener, sync::watch};

use crate::{
    route::{Downstream, Proxy},
    telemetry::Peer,
};

/// Accepts until `shutdown` turns true; open connections drain on their own.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, shutdown: watch::Receiver<bool>) {
    let local = listener.local_addr().ok();
    let mut stop = shutdown.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = super::stopped(&mut stop) => break,
        };
        let _ = tcp.set_nodelay(true);
        let downstream = Downstream {
            peer: Peer {
                principal: None,
                ip: Some(peer.ip()),
            },
            direct_ip: Some(peer.ip()),
            tunnel_authority: None,
            destination: local,
        };
        tokio::spawn(super::conn::serve(
            tcp,
            proxy.clone(),
            downstream,
            shutdown.clone(),
        ));
    }
    tracing::info!("plain HTTP listener stopped accepting");
}
