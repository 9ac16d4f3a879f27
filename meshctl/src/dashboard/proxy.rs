//! The local forwarder: an HTTP/1.1 listener on loopback that passes the
//! graph page's requests (`GET /graph`, `/graph/…`) to the control plane's
//! admin endpoint through a [`Dialer`], and answers everything else with
//! 404 — the rest of the admin (logging levels, config dumps) stays where
//! it is. Connections are capped, a client that sends no request within
//! the idle timeout is closed, and each upstream answer is bounded in time.
use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::{combinators::BoxBody, BodyExt as _, Full};
use hyper::{
    body::{Bytes, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use super::dial::Dialer;

type Body = BoxBody<Bytes, hyper::Error>;

/// The forwarder's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Client connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// How long a client connection may wait for its next request.
    pub idle: Duration,
    /// How long the admin may take to send a response's head.
    pub upstream: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            idle: Duration::from_secs(60),
            upstream: Duration::from_secs(15),
        }
    }
}

/// True for the paths the page uses.
fn forwarded(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && (path == "/graph" || path.starts_with("/graph/"))
}

fn local(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// One request: forwarded on a fresh admin connection, or refused here.
async fn handle(
    request: Request<Incoming>,
    dialer: Arc<Dialer>,
    limits: Limits,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    if !forwarded(request.method(), &path) {
        return Ok(local(
            StatusCode::NOT_FOUND,
            format!(
                "meshctl dashboard forwards only GET /graph and /graph/*, not {} {path}\n",
                request.method()
            ),
        ));
    }
    let upstream = async {
        let stream = dialer
            .connect()
            .await
            .map_err(|e| crate::accept::chain(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP to {}: {e}", dialer.describe()))?;
        tokio::spawn(conn);
        sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP to {}: {e}", dialer.describe()))
    };
    let answer = match tokio::time::timeout(limits.upstream, upstream).await {
        Ok(Ok(response)) => response.map(|body| body.boxed()),
        Ok(Err(e)) => {
            tracing::warn!(%path, error = %e, "control plane admin unreachable");
            local(StatusCode::BAD_GATEWAY, format!("{e}\n"))
        }
        Err(_) => {
            tracing::warn!(%path, "control plane admin did not answer in time");
            local(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{} did not answer within {}s\n",
                    dialer.describe(),
                    limits.upstream.as_secs()
                ),
            )
        }
    };
    Ok(answer)
}

/// Serves `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, dialer: Arc<Dialer>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    crate::accept::serve_capped(listener, slots, limits.max_connections, |stream, peer| {
        let dialer = Arc::clone(&dialer);
        async move {
            let service = hyper::service::service_fn(move |request| {
                handle(request, Arc::clone(&dialer), limits)
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.idle)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "client connection ended");
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use std::net::SocketAddr;

    use super::*;
    use crate::target::Target;

    /// A fake admin answering every request with its own path.
    async fn fake_admin() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|r: Request<Incoming>| async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "admin saw {}",
                            r.uri()
                        )))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    async fn forwarder(upstream: &str, limits: Limits) -> SocketAddr {
        let dialer =
            Dialer::new(&Target::Addr(upstream.into()), Path::new("/nonexistent")).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(dialer), limits));
        addr
    }

    async fn get(addr: SocketAddr, path: &str, method: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn forwards_the_graph_and_nothing_else() {
        let admin = fake_admin().await;
        let fwd = forwarder(&admin.to_string(), Limits::default()).await;
        let page = get(fwd, "/graph/data?namespace=default&window=60", "GET").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(
            page.ends_with("admin saw /graph/data?namespace=default&window=60"),
            "{page}"
        );
        assert!(get(fwd, "/graph", "GET")
            .await
            .ends_with("admin saw /graph"));
        for (method, path) in [
            ("GET", "/config_dump"),
            ("POST", "/graph"),
            ("GET", "/graphs"),
        ] {
            let answer = get(fwd, path, method).await;
            assert!(
                answer.starts_with("HTTP/1.1 404"),
                "{method} {path}: {answer}"
            );
            assert!(answer.contains("forwards only GET /graph"), "{answer}");
        }
    }

    #[tokio::test]
    async fn an_absent_admin_is_a_bad_gateway_naming_it() {
        let gone = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let fwd = forwarder(&gone.to_string(), Limits::default()).await;
        let answer = get(fwd, "/graph", "GET").await;
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        assert!(
            answer.contains(&format!("cannot connect to {gone}")),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn caps_connections_and_closes_idle_ones() {
        let admin = fake_admin().await;
        let limits = Limits {
            max_connections: 1,
            idle: Duration::from_millis(300),
            upstream: Duration::from_secs(5),
        };
        let fwd = forwarder(&admin.to_string(), limits).await;
        let mut first = tokio::net::TcpStream::connect(fwd).await.unwrap();
        // The slot is taken: a second connection is closed at once.
        let mut second = tokio::net::TcpStream::connect(fwd).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
            .await
            .expect("the capped connection is closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // The idle first connection is closed after the idle timeout.
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            let mut rest = vec![];
            first.read_to_end(&mut rest).await.map(|_| rest)
        })
        .await
        .expect("the idle connection is closed");
        assert!(closed.is_ok());
        // Its slot is free again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(get(fwd, "/graph", "GET")
            .await
            .ends_with("admin saw /graph"));
    }
}
