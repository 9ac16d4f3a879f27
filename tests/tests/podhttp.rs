//! `podhttp` on loopback, no root needed: the reply format, the per-request
//! and per-instance switches, the actuator, and h2c on the HTTP/1.1 port.
//! Each test runs its own server on a free port and kills it on drop.
use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{body::Bytes, HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_testkit::eventually;
use serde_json::Value;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

/// A running `podhttp serve`; killed on drop, also when a test panics.
struct Served {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Served {
    fn start(pod: &str, version: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_podhttp"))
            .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .args(["--pod", pod, "--version", version])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        let mut served = Self {
            child,
            port: 0,
            lines,
        };
        let ready = served.printed_line(|v| v["ready"] == true);
        served.port = ready["port"].as_u64().unwrap() as u16;
        served
    }

    fn printed_line(&self, pred: impl Fn(&Value) -> bool) -> Value {
        eventually("podhttp printing the line", WAIT, || {
            let lines = self.lines.lock().unwrap();
            let found = lines.iter().find(|v| pred(v)).cloned();
            found.ok_or_else(|| format!("{} lines printed, none matching", lines.len()))
        })
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        // An absolute URI: HTTP/2 needs the authority; for HTTP/1.1 `send`
        // turns it into origin form plus Host, as a real client does.
        Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
    }

    async fn send(&self, req: Request<Full<Bytes>>, h2: bool) -> Reply {
        tokio::time::timeout(WAIT, send(self.port, req, h2))
            .await
            .expect("request timed out")
    }

    async fn get(&self, path: &str) -> Reply {
        let req = self.request(Method::GET, path).body(Full::default());
        self.send(req.unwrap(), false).await
    }

    async fn put(&self, path: &str) -> Reply {
        let req = self.request(Method::PUT, path).body(Full::default());
        self.send(req.unwrap(), false).await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

/// One request on a fresh connection (HTTP/1.1, or h2c with prior knowledge).
async fn send(port: u16, mut req: Request<Full<Bytes>>, h2: bool) -> Reply {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let io = TokioIo::new(tcp);
    let resp = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let authority = req.uri().authority().unwrap().to_string();
        req.headers_mut()
            .entry(hyper::header::HOST)
            .or_insert(authority.parse().unwrap());
        *req.uri_mut() = req
            .uri()
            .path_and_query()
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test]
async fn reply_names_pod_and_version() {
    let app = Served::start("reviews-v2-7d9f", "v2", &[]);
    let req = app
        .request(Method::GET, "/reviews/0?x=1")
        .header("host", "reviews.default:9080")
        .header("x-request-id", "abc")
        .body(Full::default())
        .unwrap();
    let reply = app.send(req, false).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-pod"), "reviews-v2-7d9f");
    assert_eq!(reply.header("x-version"), "v2");
    let body = reply.json();
    assert_eq!(body["pod"], "reviews-v2-7d9f", "{body}");
    assert_eq!(body["version"], "v2");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/reviews/0");
    assert_eq!(body["host"], "reviews.default:9080");
    assert_eq!(body["headers"]["x-request-id"], "abc");
    app.printed_line(|v| v["request"] == "/reviews/0" && v["status"] == 200);
}

#[tokio::test]
async fn delay_per_request_and_per_instance() {
    let app = Served::start("ratings-v1", "v1", &[]);
    let start = Instant::now();
    assert_eq!(
        app.get("/ratings?delay_ms=300").await.status,
        StatusCode::OK
    );
    assert!(start.elapsed() >= Duration::from_millis(300));

    let req = app
        .request(Method::GET, "/ratings")
        .header("x-delay-ms", "200");
    let start = Instant::now();
    app.send(req.body(Full::default()).unwrap(), false).await;
    assert!(start.elapsed() >= Duration::from_millis(200));

    let slow = Served::start("ratings-v3", "v3", &["--delay-ms", "250"]);
    let start = Instant::now();
    let reply = slow.get("/ratings").await;
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(reply.header("x-version"), "v3");
}

#[tokio::test]
async fn forced_status() {
    let app = Served::start("details-v1", "v1", &[]);
    let reply = app.get("/details?status=503").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("x-version"), "v1");
    assert_eq!(reply.json()["pod"], "details-v1");

    let req = app
        .request(Method::GET, "/details")
        .header("x-status", "404");
    let reply = app.send(req.body(Full::default()).unwrap(), false).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    assert_eq!(
        app.get("/details?status=abc").await.status,
        StatusCode::BAD_REQUEST
    );

    let failing = Served::start("details-v2", "v2", &["--fail-status", "502"]);
    assert_eq!(
        failing.get("/details").await.status,
        StatusCode::BAD_GATEWAY
    );
    // A request's own status beats the instance default.
    assert_eq!(
        failing.get("/details?status=200").await.status,
        StatusCode::OK
    );
    // The actuator is not subject to the instance default.
    assert_eq!(failing.get("/actuator/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn down_up_health_cycle() {
    let app = Served::start("productpage-v1", "v1", &[]);
    let health = app.get("/actuator/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "UP");

    assert_eq!(app.put("/actuator/down").await.status, StatusCode::OK);
    let reply = app.get("/productpage").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.header("x-pod"), "productpage-v1");
    // Down wins over a request's own status.
    assert_eq!(
        app.get("/productpage?status=200").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let health = app.get("/actuator/health").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.json()["status"], "DOWN");

    assert_eq!(app.put("/actuator/up").await.status, StatusCode::OK);
    assert_eq!(app.get("/productpage").await.status, StatusCode::OK);
    assert_eq!(app.get("/actuator/health").await.json()["status"], "UP");
}

#[tokio::test]
async fn echo_round_trip() {
    let app = Served::start("echo-v1", "v1", &[]);
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let req = app
        .request(Method::POST, "/actuator/echo")
        .header("content-type", "application/octet-stream")
        .body(Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let reply = app.send(req, false).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.as_ref(), payload.as_slice());
    assert_eq!(reply.header("x-pod"), "echo-v1");
    assert_eq!(reply.header("content-type"), "application/octet-stream");
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let app = Served::start("reviews-v3", "v3", &[]);
    let req = app.request(Method::GET, "/reviews/1").body(Full::default());
    let reply = app.send(req.unwrap(), true).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-version"), "v3");
    let body = reply.json();
    assert_eq!(body["path"], "/reviews/1", "{body}");
    assert_eq!(body["host"], format!("127.0.0.1:{}", app.port));

    let req = app
        .request(Method::POST, "/actuator/echo")
        .body(Full::new(Bytes::from_static(b"over h2")));
    let reply = app.send(req.unwrap(), true).await;
    assert_eq!(reply.body.as_ref(), b"over h2");
}
