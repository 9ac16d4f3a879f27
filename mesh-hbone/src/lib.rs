//! HBONE: HTTP/2 `CONNECT` over mutual TLS with SPIFFE identities, as
//! Istio's ztunnel speaks it (hop ③ of the data path).
//!
//! * [`Identity`] is `spiffe://<td>/ns/<ns>/sa/<sa>`. As in ztunnel, a
//!   client dials the destination pod's own listener (`<pod IP>:15008`)
//!   and sends no SNI: that listener is bound to the pod's identity
//!   ([`HboneServer::with_identity`]). [`sni_for`] still names an identity
//!   in SNI for a server holding several on one address
//!   ([`ClientOptions::send_sni`]).
//! * [`CertStore`] holds every local identity's [`WorkloadCert`] and the
//!   [`TrustBundle`]; replacing a certificate rotates it for the next
//!   handshake without touching established connections.
//! * [`HboneClient::connect`] returns an [`HboneStream`] (tokio
//!   `AsyncRead + AsyncWrite`) tunnelled through a pooled connection;
//!   [`HboneServer`] accepts tunnels and relays each to what a
//!   [`ConnectHandler`] returns.
//! * [`ca_client`] asks the mesh CA for a workload certificate (Istio's
//!   `CreateCertificate`) and says when one is due for renewal.
//!
//! TLS is 1.3 only with ALPN `h2` and rustls' ring provider, installed
//! explicitly (the process-default provider is never consulted).
//!
//! ```no_run
//! use std::sync::Arc;
//! use mesh_hbone::*;
//!
//! # async fn demo(root_pem: &str, chain_pem: &str, key_pem: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(CertStore::new(TrustBundle::from_pem(root_pem)?));
//! store.insert(WorkloadCert::from_pem(chain_pem, key_pem)?); // again to rotate
//!
//! // Server (inbound, :15008): decide per CONNECT, then bytes are relayed.
//! let handler = handler_fn(|req: ConnectRequest| async move {
//!     // authorize req.peer for req.local_identity / req.authority here
//!     tokio::net::TcpStream::connect(req.authority)
//!         .await
//!         .map_err(|_| http::StatusCode::SERVICE_UNAVAILABLE)
//! });
//! let listener = tokio::net::TcpListener::bind(("0.0.0.0", HBONE_PORT)).await?;
//! tokio::spawn(HboneServer::new(store.clone(), handler).serve(listener));
//!
//! // Client (outbound): a tunnel is an AsyncRead + AsyncWrite.
//! let client = HboneClient::new(store, ClientOptions { socket_mark: Some(0x539), ..Default::default() });
//! let src: Identity = "spiffe://cluster.local/ns/a/sa/web".parse()?;
//! let dst: Identity = "spiffe://cluster.local/ns/b/sa/api".parse()?;
//! let mut tunnel = client
//!     .connect(&src, "10.244.1.7:15008".parse()?, &dst, "10.244.1.7:9080".parse()?)
//!     .await?;
//! # let mut pod = tokio::net::TcpStream::connect("127.0.0.1:1").await?;
//! mesh_hbone::relay(&mut pod, &mut tunnel).await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod alert;
pub mod ca_client;
mod certs;
mod client;
pub mod counted;
pub mod forwarded;
mod identity;
mod pool;
mod relay;
mod server;
pub mod settings;
mod store;
mod stream;
pub mod test_ca;
mod tls;

pub use certs::{parse_leaf, uri_sans, CertError, LeafInfo, TrustBundle, WorkloadCert};
pub use client::{ClientError, ClientOptions, HboneClient, SocketOrigin, SocketOriginFuture};
pub use counted::{Counted, End, LiveBytes};
pub use identity::{sni_for, Identity, IdentityError, SCHEME as SPIFFE_SCHEME};
pub use relay::relay;
pub use server::{
    connect_target, handler_fn, serve, ConnectHandler, ConnectRequest, HandlerFuture, HboneServer,
    RelayOutcome, ServerError, ServerOptions, ServerStats, Upstream,
};
pub use store::CertStore;
pub use stream::HboneStream;
pub use tls::{
    client_config, local_identity, provider, server_config, PeerIdentityError, TlsError, ALPN_H2,
};

/// The HBONE port (Istio's `hbone_mtls_port`), defined with the kernel's
/// view of the ports in `mesh-common`.
pub use mesh_common::HBONE_PORT;
