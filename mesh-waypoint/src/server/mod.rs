//! Where requests come in: HBONE tunnels on :15008 (each CONNECT served by
//! hyper over an in-memory pipe, so HTTP/1.1 and h2/gRPC both work inside
//! a tunnel) and plain HTTP on :15080. Both hand every request to the
//! current [`Proxy`](crate::route::Proxy) stack with the connection's
//! [`Downstream`](crate::route::Downstream) facts attached.
pub mod conn;
pub mod hbone;
pub mod http;
pub mod source;
pub mod unvectored;

/// Resolves once the drain started (`mesh_admin::drain`). The watch guard
/// is dropped there, so callers' futures stay `Send`.
pub async fn stopped(shutdown: &mut mesh_admin::drain::DrainWatch) {
    mesh_admin::drain::drained(shutdown).await;
}
