//! What meshctl's local forwarders (`dashboard`, `port-forward`) share:
//! a capped accept loop and error text with its causes.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// Accepts on `listener` until the future is dropped, handing each
/// connection to `handle` on its own task while holding one of `slots`;
/// a connection beyond `max` is closed at once. Accept errors (EMFILE and
/// friends) back off instead of spinning.
pub async fn serve_capped<F, Fut>(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max: usize,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot): Result<OwnedSemaphorePermit, _> = Arc::clone(&slots).try_acquire_owned()
        else {
            tracing::warn!(%peer, max, "too many connections; closing one");
            continue;
        };
        let work = handle(stream, peer);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

/// An error and its causes, `: `-separated.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
