//! Answers one request: the app reply (a JSON description of the request),
//! the actuator endpoints, and the fault switches.
//!
//! Precedence for app paths: an instance marked down answers 500 whatever
//! the request asks (like a crashed app behind a live socket); otherwise a
//! per-request switch beats the instance default. Actuator paths ignore the
//! down state and the instance defaults, so a test can always bring an
//! instance back up and read its health.
use std::{
    convert::Infallible,
    sync::atomic::{AtomicBool, Ordering},
    sync::Arc,
};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    body::{Bytes, Incoming},
    header::{HeaderValue, CONTENT_TYPE, HOST},
    http::request::Parts,
    Method, Request, Response, StatusCode,
};
use serde_json::{json, Value};

use super::{println_json, switches::Switches, Config};

/// Echo bodies are buffered; this bounds what a test can make us hold.
const ECHO_LIMIT: usize = 16 << 20;

/// One serving instance: its config and its actuator state.
#[derive(Debug)]
pub struct Instance {
    config: Config,
    down: AtomicBool,
}

impl Instance {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            down: AtomicBool::new(false),
        }
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let (status, body, content_type) = match Switches::from_parts(&parts) {
            Ok(switches) => self.answer(&parts, body, switches).await,
            Err(e) => (
                StatusCode::BAD_REQUEST,
                json_body(&json!({"error": e})),
                None,
            ),
        };
        println_json(&json!({"request": path, "status": status.as_u16()}));
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            content_type.unwrap_or(HeaderValue::from_static("application/json")),
        );
        // Names and versions come from our own flags; a value that is not a
        // valid header is simply not sent (the JSON body still has it).
        if let Ok(v) = HeaderValue::from_str(&self.config.pod) {
            headers.insert("x-pod", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.config.version) {
            headers.insert("x-version", v);
        }
        Ok(resp)
    }

    /// Status, body and (for echo) the content type to send back.
    async fn answer(
        &self,
        parts: &Parts,
        body: Incoming,
        switches: Switches,
    ) -> (StatusCode, Bytes, Option<HeaderValue>) {
        let path = parts.uri.path();
        let actuator = path.starts_with("/actuator/");
        let delay = switches.delay.or((!actuator).then(|| self.config.delay()));
        if let Some(delay) = delay.filter(|d| !d.is_zero()) {
            tokio::time::sleep(delay).await;
        }
        if !actuator {
            let status = if self.down.load(Ordering::Relaxed) {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                switches
                    .status
                    .or_else(|| {
                        self.config
                            .fail_status
                            .and_then(|c| StatusCode::from_u16(c).ok())
                    })
                    .unwrap_or(StatusCode::OK)
            };
            return (status, json_body(&self.describe(parts)), None);
        }
        let (status, body, content_type) = self.actuator(parts, body).await;
        (switches.status.unwrap_or(status), body, content_type)
    }

    async fn actuator(
        &self,
        parts: &Parts,
        body: Incoming,
    ) -> (StatusCode, Bytes, Option<HeaderValue>) {
        let health = |down: bool| {
            if down {
                (StatusCode::SERVICE_UNAVAILABLE, "DOWN")
            } else {
                (StatusCode::OK, "UP")
            }
        };
        let (status, state) = match (&parts.method, parts.uri.path()) {
            (&Method::PUT, "/actuator/down") => {
                self.down.store(true, Ordering::Relaxed);
                (StatusCode::OK, "DOWN")
            }
            (&Method::PUT, "/actuator/up") => {
                self.down.store(false, Ordering::Relaxed);
                (StatusCode::OK, "UP")
            }
            (&Method::GET, "/actuator/health") => health(self.down.load(Ordering::Relaxed)),
            (&Method::GET | &Method::POST, "/actuator/echo") => {
                return match Limited::new(body, ECHO_LIMIT).collect().await {
                    Ok(collected) => (
                        StatusCode::OK,
                        collected.to_bytes(),
                        parts.headers.get(CONTENT_TYPE).cloned(),
                    ),
                    Err(e) => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        json_body(&json!({"error": e.to_string()})),
                        None,
                    ),
                };
            }
            _ => {
                let mut reply = self.describe(parts);
                reply["error"] = "no such actuator endpoint".into();
                return (StatusCode::NOT_FOUND, json_body(&reply), None);
            }
        };
        (status, json_body(&json!({"status": state})), None)
    }

    /// The app reply: who answered and what it saw.
    fn describe(&self, parts: &Parts) -> Value {
        // HTTP/2 carries the authority in the URI, HTTP/1.1 in Host.
        let host = parts.uri.authority().map(|a| a.to_string()).or_else(|| {
            parts
                .headers
                .get(HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        });
        let mut headers = serde_json::Map::new();
        for name in parts.headers.keys() {
            let joined = parts
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            headers.insert(name.to_string(), joined.into());
        }
        json!({
            "pod": self.config.pod,
            "version": self.config.version,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "host": host,
            "headers": headers,
        })
    }
}

fn json_body(value: &Value) -> Bytes {
    Bytes::from(value.to_string())
}
