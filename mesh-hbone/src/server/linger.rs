//! Closing a connection whose TLS handshake we refused, so the refusal
//! reaches the client.
//!
//! With TLS 1.3 the client finishes its side of the handshake and sends the
//! HTTP/2 preface before it learns our verdict on its certificate. Closing a
//! socket with that preface unread makes the kernel answer with a reset,
//! which discards the alert still on its way: the client then sees "connection
//! reset" instead of "rejected: unknown CA". So we send FIN after the alert
//! and read (and discard) what the client still sends until it closes, for a
//! bounded time and byte count: a hostile client cannot keep the slot longer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a refused client may take to read the alert and close.
const LINGER: Duration = Duration::from_secs(1);
/// How much a refused client may still send before we stop reading.
const LINGER_BYTES: usize = 64 * 1024;

/// Half-closes `tcp` after the alert already written to it, then drains the
/// client's remaining bytes until it closes, [`LINGER`] passes or
/// [`LINGER_BYTES`] arrive.
pub(super) async fn close_after_alert(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut seen = 0;
        while seen < LINGER_BYTES {
            match tcp.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
