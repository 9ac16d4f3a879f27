//! The SNI of a TLS ClientHello, read from the first bytes of a connection
//! without consuming them (the caller keeps the bytes and replays them to
//! the chain it picks: a passthrough upstream or the TLS handshake), as
//! Envoy's `tls_inspector`. Every length is checked against what is
//! buffered; the handshake message is capped at [`MAX_CLIENT_HELLO`]
//! bytes and may span several records. Anything that is not a well-formed
//! ClientHello is [`Hello::Invalid`]: the connection is closed.
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest ClientHello handshake message accepted (Envoy's tls_inspector
/// default is 64 KiB; 16 KiB holds any real ClientHello, post-quantum key
/// shares included).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;
/// Record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// Largest TLS plaintext record body (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;

/// What the buffered bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A prefix of a ClientHello: read more.
    Incomplete,
    /// A whole ClientHello; its SNI host name (lower case), if any.
    Complete { sni: Option<String> },
    /// Not a ClientHello, or a malformed one.
    Invalid(&'static str),
}

/// Parses the ClientHello at the start of `buf`.
pub fn parse(buf: &[u8]) -> Hello {
    // Gather the handshake bytes from consecutive handshake records.
    let mut handshake = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + RECORD_HEADER) else {
            return Hello::Incomplete;
        };
        if header[0] != CONTENT_HANDSHAKE {
            return Hello::Invalid("not a TLS handshake record");
        }
        if header[1] != 3 {
            return Hello::Invalid("not a TLS record version");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Hello::Invalid("bad TLS record length");
        }
        let Some(body) = buf.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else {
            return Hello::Incomplete;
        };
        handshake.extend_from_slice(body);
        at += RECORD_HEADER + len;
        if handshake.len() < 4 {
            continue;
        }
        if handshake[0] != HANDSHAKE_CLIENT_HELLO {
            return Hello::Invalid("first handshake message is not a ClientHello");
        }
        let hello_len = (usize::from(handshake[1]) << 16)
            | (usize::from(handshake[2]) << 8)
            | usize::from(handshake[3]);
        if hello_len > MAX_CLIENT_HELLO {
            return Hello::Invalid("ClientHello too large");
        }
        if handshake.len() >= 4 + hello_len {
            return match client_hello(&handshake[4..4 + hello_len]) {
                Ok(sni) => Hello::Complete { sni },
                Err(why) => Hello::Invalid(why),
            };
        }
    }
}

/// A bounds-checked cursor.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.buf.len() {
            return Err("truncated ClientHello");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a `width`-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u8()?;
        self.take(n.into())
    }

    fn vec16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()?;
        self.take(n.into())
    }
}

/// The SNI of a ClientHello body (RFC 8446 §4.1.2, RFC 6066 §3).
fn client_hello(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader { buf: body };
    let _legacy_version = r.u16()?;
    let _random = r.take(32)?;
    if r.vec8()?.len() > 32 {
        return Err("session id longer than 32 bytes");
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("bad cipher suite list");
    }
    if r.vec8()?.is_empty() {
        return Err("no compression method");
    }
    if r.buf.is_empty() {
        return Ok(None); // no extensions
    }
    let mut exts = Reader { buf: r.vec16()? };
    if !r.buf.is_empty() {
        return Err("bytes after the extensions");
    }
    let mut sni = None;
    while !exts.buf.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        if sni.is_some() {
            return Err("two server_name extensions");
        }
        sni = Some(server_name(data)?);
    }
    Ok(sni.flatten())
}

/// The host name of a `server_name` extension.
fn server_name(data: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader { buf: data };
    let mut list = Reader { buf: r.vec16()? };
    if !r.buf.is_empty() {
        return Err("bytes after the server name list");
    }
    let mut host = None;
    while !list.buf.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind != NAME_TYPE_HOST || host.is_some() {
            continue;
        }
        let valid = !name.is_empty()
            && name.len() <= 255
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !valid {
            return Err("server name is not a DNS host name");
        }
        host = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
    }
    Ok(host)
}

/// Why no ClientHello could be read.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error("reading the ClientHello: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed before a whole ClientHello")]
    Closed,
    #[error("{0}")]
    Invalid(&'static str),
    #[error("no whole ClientHello within {0:?}")]
    Timeout(Duration),
}

/// Reads from `io` until its first bytes are a whole ClientHello (within
/// `timeout`); returns the bytes read (to be replayed) and the SNI.
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    io: &mut S,
    timeout: Duration,
) -> Result<(Vec<u8>, Option<String>), PeekError> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        loop {
            match parse(&buf) {
                Hello::Complete { sni } => return Ok((buf, sni)),
                Hello::Invalid(why) => return Err(PeekError::Invalid(why)),
                Hello::Incomplete => {}
            }
            // Never more than the largest hello in records, plus headers.
            if buf.len() > MAX_CLIENT_HELLO + 4 + 64 * RECORD_HEADER {
                return Err(PeekError::Invalid("ClientHello too large"));
            }
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(PeekError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| PeekError::Timeout(timeout))?
}

#[cfg(test)]
mod tests;
