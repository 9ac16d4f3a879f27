//! The one HTTP client call the graph needs: a plain-HTTP `GET` with a
//! deadline on the whole exchange and a cap on the body, used to scrape
//! proxies and to query Prometheus.
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::{body::Bytes, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a `GET` failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("status {0}")]
    Status(hyper::StatusCode),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("body: {0}")]
    Body(String),
}

/// `GET http://<authority><path>`: connects to `authority` (`host:port`),
/// reads at most `max_body` bytes, all within `timeout`. Any status but
/// 200 is an error (with Prometheus's error body ignored).
pub async fn get(
    authority: &str,
    path: &str,
    timeout: Duration,
    max_body: usize,
) -> Result<Bytes, FetchError> {
    tokio::time::timeout(timeout, get_inner(authority, path, max_body))
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

async fn get_inner(authority: &str, path: &str, max_body: usize) -> Result<Bytes, FetchError> {
    let stream = TcpStream::connect(authority)
        .await
        .map_err(FetchError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "text/plain, application/json")
        .body(Empty::<Bytes>::new())?;
    let result = async {
        let resp = sender.send_request(req).await?;
        if resp.status() != hyper::StatusCode::OK {
            return Err(FetchError::Status(resp.status()));
        }
        let declared = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > max_body) {
            return Err(FetchError::TooLarge(max_body));
        }
        match Limited::new(resp.into_body(), max_body).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(FetchError::TooLarge(max_body))
            }
            Err(e) => Err(FetchError::Body(e.to_string())),
        }
    }
    .await;
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot server answering `response` to the first request.
    async fn serve_once(response: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(response.as_bytes()).await.unwrap();
            // Keep the connection open (a slow server).
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        addr
    }

    #[tokio::test]
    async fn reads_a_body() {
        let addr = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let body = get(&addr, "/x", Duration::from_secs(2), 100).await.unwrap();
        assert_eq!(&body[..], b"hello");
    }

    #[tokio::test]
    async fn caps_the_body_and_rejects_bad_status() {
        let addr = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let err = get(&addr, "/x", Duration::from_secs(2), 4)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge(4)), "{err}");
        let addr = serve_once(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .await;
        let err = get(&addr, "/x", Duration::from_secs(2), 4)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge(4)), "{err}");
        let addr = serve_once("HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        let err = get(&addr, "/x", Duration::from_secs(2), 4)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::Status(s) if s.as_u16() == 503),
            "{err}"
        );
    }

    #[tokio::test]
    async fn times_out() {
        // Headers never complete.
        let addr = serve_once("HTTP/1.1 200 OK\r\n").await;
        let err = get(&addr, "/x", Duration::from_millis(200), 4)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Timeout(_)), "{err}");
    }
}
