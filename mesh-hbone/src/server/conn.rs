//! One accepted HBONE connection: TLS handshake, the HTTP/2 accept loop,
//! and per-stream CONNECT handling and relaying.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{Request, StatusCode};
use rustls::pki_types::CertificateDer;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{
    empty_response, ConnectHandler, ConnectRequest, RelayOutcome, ServerOptions, ServerStats,
};
use crate::certs::parse_leaf;
use crate::counted::{Counted, End};
use crate::identity::Identity;
use crate::settings;
use crate::stream::HboneStream;
use crate::CertStore;

pub(super) struct Ctx {
    pub store: Arc<CertStore>,
    /// The identity the server is bound to, if any.
    pub pinned: Option<Identity>,
    pub handler: Arc<dyn ConnectHandler>,
    pub options: ServerOptions,
    pub stats: Arc<ServerStats>,
    /// Failed handshakes are the client's doing: logged at most every few
    /// seconds, all counted in `stats`.
    pub handshake_log: mesh_admin::rate_limit::LogLimiter,
}

/// What every stream of one connection shares.
struct ConnInfo {
    peer: Identity,
    peer_certificate: CertificateDer<'static>,
    local_identity: Identity,
    peer_addr: SocketAddr,
}

pub(super) async fn serve_connection(
    ctx: Arc<Ctx>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer_addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let timeout = ctx.options.handshake_timeout;
    let fail = |what: &str, error: &dyn std::fmt::Display| {
        ctx.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
        match ctx.handshake_log.check() {
            Some(suppressed) => tracing::warn!(
                %peer_addr, %error, suppressed,
                "HBONE {what} failed (further failures logged at most every 10 s)"
            ),
            None => tracing::debug!(%peer_addr, %error, "HBONE {what} failed"),
        }
    };
    let tcp = BufReader::with_capacity(settings::SOCKET_READ_BUFFER, tcp);
    let accept = acceptor.accept(tcp).into_fallible();
    let mut tls = match tokio::time::timeout(timeout, accept).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((e, tcp))) => {
            fail("TLS handshake", &e);
            return super::linger::close_after_alert(tcp.into_inner()).await;
        }
        Err(_) => return fail("TLS handshake", &format!("timed out after {timeout:?}")),
    };
    tls.get_mut()
        .1
        .set_buffer_limit(Some(settings::TLS_SEND_BUFFER));
    let session = tls.get_ref().1;
    let peer_certificate = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let sni = session.server_name().map(str::to_owned);
    // The verifier required a SPIFFE leaf and the resolver a local
    // identity; a miss here means the store changed during the handshake.
    let peer = peer_certificate.as_ref().and_then(|c| parse_leaf(c).ok());
    let local = crate::tls::local_identity(&ctx.store, ctx.pinned.as_ref(), sni.as_deref());
    let (Some(peer_certificate), Some(peer), Some(local_identity)) =
        (peer_certificate, peer, local)
    else {
        return fail(
            "identity lookup",
            &format!("SNI {sni:?} or peer identity gone"),
        );
    };
    let info = Arc::new(ConnInfo {
        peer: peer.identity,
        peer_certificate,
        local_identity,
        peer_addr,
    });
    let builder = settings::server_builder(ctx.options.max_concurrent_streams);
    let mut h2 = match tokio::time::timeout(timeout, builder.handshake::<_, Bytes>(tls)).await {
        Ok(Ok(h2)) => h2,
        Ok(Err(e)) => return fail("HTTP/2 handshake", &e),
        Err(_) => return fail("HTTP/2 handshake", &format!("timed out after {timeout:?}")),
    };
    tracing::debug!(%peer_addr, peer = %info.peer, local = %info.local_identity, "HBONE connection accepted");

    let mut streams = JoinSet::new();
    let mut draining = false;
    let drain = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
    tokio::pin!(drain);
    loop {
        tokio::select! {
            next = h2.accept() => match next {
                Some(Ok((request, respond))) => {
                    streams.spawn(handle_stream(ctx.clone(), info.clone(), request, respond));
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer_addr, error = %e, "HBONE connection ended with an error");
                    break;
                }
                None => break,
            },
            _ = stop.changed(), if !draining => {
                draining = true;
                h2.graceful_shutdown();
                drain.as_mut().reset(tokio::time::Instant::now() + ctx.options.drain_timeout);
            }
            () = &mut drain, if draining => {
                tracing::debug!(%peer_addr, "HBONE drain timeout, closing connection");
                break;
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
    // Without the connection, remaining streams fail promptly; wait for
    // their `finished` reports, but not forever.
    drop(h2);
    let wait_all = async { while streams.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), wait_all)
        .await
        .is_err()
    {
        streams.abort_all();
    }
}

/// Source of [`ConnectRequest::id`]; process-wide so ids stay unique even
/// with several servers.
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

async fn handle_stream(
    ctx: Arc<Ctx>,
    info: Arc<ConnInfo>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let reject = |respond: &mut SendResponse<Bytes>, status: StatusCode| {
        ctx.stats.streams_rejected.fetch_add(1, Ordering::Relaxed);
        let _ = respond.send_response(empty_response(status), true);
    };
    let peer = &info.peer;
    let addr = match super::connect_target(request.method(), request.uri()) {
        Ok(addr) => addr,
        Err(status) => {
            tracing::debug!(%peer, method = %request.method(), uri = %request.uri(), %status, "HBONE request is not CONNECT to ip:port");
            return reject(&mut respond, status);
        }
    };
    let (parts, body) = request.into_parts();
    let connect = ConnectRequest {
        id: NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed),
        peer: info.peer.clone(),
        peer_certificate: info.peer_certificate.clone(),
        local_identity: info.local_identity.clone(),
        authority: addr,
        peer_addr: info.peer_addr,
        headers: parts.headers,
        live: Arc::default(),
    };
    let handled = tokio::select! {
        r = ctx.handler.handle(connect.clone()) => r,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
            tracing::debug!(%peer, authority = %addr, "HBONE client cancelled before the handler answered");
            return;
        }
    };
    let upstream = match handled {
        Ok(upstream) => upstream,
        Err(status) => {
            let status = if status.is_success() {
                tracing::warn!(%status, "HBONE handler refused with a success status; sending 500");
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                status
            };
            tracing::debug!(%peer, authority = %addr, %status, "HBONE CONNECT refused");
            return reject(&mut respond, status);
        }
    };
    let send = match respond.send_response(empty_response(StatusCode::OK), false) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(%peer, authority = %addr, error = %e, "HBONE stream gone before 200");
            return;
        }
    };
    ctx.stats.streams_accepted.fetch_add(1, Ordering::Relaxed);
    let mut tunnel = HboneStream::new(send, body, Some(info.peer_certificate.clone()), None);
    let mut upstream = Counted::new(upstream, End::Destination, Arc::clone(&connect.live));
    let max_read = ctx.options.relay_buffer_size;
    let result = crate::relay::relay_with(&mut upstream, &mut tunnel, max_read).await;
    let error = result.err();
    if error.is_some() {
        tunnel.reset(Reason::CANCEL);
    }
    // Counted per read and write, so totals survive a relay error.
    let (bytes_in, bytes_out) = connect.live.load();
    let outcome = RelayOutcome {
        bytes_in,
        bytes_out,
        error,
    };
    tracing::debug!(
        %peer, authority = %addr, bytes_in = outcome.bytes_in, bytes_out = outcome.bytes_out,
        error = ?outcome.error, "HBONE tunnel closed"
    );
    ctx.handler.finished(&connect, &outcome);
}
