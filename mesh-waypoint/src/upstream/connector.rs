//! Opening the byte stream to an endpoint: plain TCP to `ip:port`, or an
//! HBONE tunnel through the endpoint's node agent when the Address xDS
//! says it is a mesh workload (`authority` = pod `ip:port`, source = the
//! waypoint's identity), or TCP then TLS the waypoint originates (a
//! cluster with a TLS transport socket: never HBONE). Each is bounded by
//! the cluster's `connect_timeout`, the TLS handshake included; a failed
//! handshake is a connect failure (`UF`).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use mesh_hbone::{HboneClient, Identity};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{tls::TlsOrigin, UpstreamError};

/// A connected stream to an endpoint.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// How an endpoint is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Plain,
    /// TCP to the endpoint, then TLS.
    Tls(Arc<TlsOrigin>),
    /// Through the node agent at `gateway`, whose certificate names `peer`.
    Hbone {
        gateway: SocketAddr,
        peer: Identity,
    },
}

/// Dials endpoints; shared by all pools.
#[derive(Clone, Default)]
pub struct Connector {
    pub hbone: Option<Arc<HboneClient>>,
    pub identity: Option<Identity>,
}

impl Connector {
    pub async fn connect(
        &self,
        addr: SocketAddr,
        route: &Route,
        timeout: Duration,
    ) -> Result<BoxIo, UpstreamError> {
        let dial = async {
            match route {
                Route::Plain => {
                    let tcp = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| UpstreamError::ConnectFailure(format!("{addr}: {e}")))?;
                    let _ = tcp.set_nodelay(true);
                    Ok(Box::new(tcp) as BoxIo)
                }
                Route::Tls(tls) => {
                    let tcp = tokio::net::TcpStream::connect(addr)
                        .await
                        .map_err(|e| UpstreamError::ConnectFailure(format!("{addr}: {e}")))?;
                    let _ = tcp.set_nodelay(true);
                    let stream = tls.handshake(tcp).await.map_err(|e| {
                        UpstreamError::ConnectFailure(format!("{addr}: TLS handshake: {e}"))
                    })?;
                    Ok(Box::new(stream) as BoxIo)
                }
                Route::Hbone { gateway, peer } => {
                    let (Some(client), Some(src)) = (&self.hbone, &self.identity) else {
                        return Err(UpstreamError::ConnectFailure(format!(
                            "{addr}: mesh workload behind {gateway} but the waypoint has no HBONE client"
                        )));
                    };
                    let stream = client
                        .connect(src, *gateway, peer, addr)
                        .await
                        .map_err(|e| {
                            UpstreamError::ConnectFailure(format!(
                                "{addr} via HBONE {gateway}: {e}"
                            ))
                        })?;
                    Ok(Box::new(stream) as BoxIo)
                }
            }
        };
        tokio::time::timeout(timeout, dial).await.map_err(|_| {
            UpstreamError::ConnectFailure(format!("{addr}: connect timeout after {timeout:?}"))
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_and_hbone_without_client_are_connect_failures() {
        // Bind then drop: the port is (almost surely) closed now.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let c = Connector::default();
        let e = c
            .connect(addr, &Route::Plain, Duration::from_secs(2))
            .await
            .err()
            .unwrap();
        assert!(e.is_connect_failure(), "{e}");
        let route = Route::Hbone {
            gateway: addr,
            peer: "spiffe://cluster.local/ns/default/sa/x".parse().unwrap(),
        };
        let e = c
            .connect(addr, &route, Duration::from_secs(2))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("no HBONE client"), "{e}");
    }
}
