//! A tiny HTTP/1.1 client for the admin endpoints: one request per
//! connection, hyper over a plain `TcpStream`, everything (connect, send,
//! body) bounded by [`TIMEOUT`].
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::{body::Bytes, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Limit on a whole request.
pub const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {addr}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {}s", TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("HTTP to {addr} failed")]
    Protocol { addr: String, source: hyper::Error },
    #[error("{method} {path} on {addr} returned {status}: {body}")]
    Status {
        addr: String,
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("{path} on {addr} is not the JSON expected")]
    Json {
        addr: String,
        path: String,
        source: serde_json::Error,
    },
}

impl HttpError {
    /// True when nothing answered at all (wrong address, daemon down), as
    /// opposed to an endpoint that answered with an error.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HttpError::Connect { .. } | HttpError::Timeout { .. })
    }
}

/// Sends one request; returns the body of a 2xx response.
pub async fn request(addr: &str, method: Method, path: &str) -> Result<Bytes, HttpError> {
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.into(),
                source,
            })?;
        let protocol = |source| HttpError::Protocol {
            addr: addr.into(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(protocol)?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, addr)
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
        let resp = sender.send_request(req).await.map_err(protocol)?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(protocol)?
            .to_bytes();
        if !status.is_success() {
            return Err(HttpError::Status {
                addr: addr.into(),
                method,
                path: path.into(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(body)
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| HttpError::Timeout { addr: addr.into() })?
}

/// `GET path`, parsed as JSON.
pub async fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, HttpError> {
    let body = request(addr, Method::GET, path).await?;
    serde_json::from_slice(&body).map_err(|source| HttpError::Json {
        addr: addr.into(),
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_and_error_statuses() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = get_json(&format!("127.0.0.1:{port}"), "/x")
            .await
            .unwrap_err();
        assert!(err.is_unreachable(), "{err}");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 9\r\n\r\nbad level")
                .await
                .unwrap();
        });
        let err = request(&addr, Method::POST, "/logging?level=x")
            .await
            .unwrap_err();
        assert!(!err.is_unreachable());
        assert_eq!(
            err.to_string(),
            format!("POST /logging?level=x on {addr} returned 400 Bad Request: bad level")
        );
    }
}
