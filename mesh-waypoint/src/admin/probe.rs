//! The probe port (`--ready-addr`, :15021, as Istio's): what the kubelet
//! reads, on the pod address, and nothing else. Admin, which can stop the
//! waypoint or change its logging, stays on loopback.
//!
//! - `GET /healthz/ready` — 200 once every xDS type arrived, 503 before and
//!   while draining (the same answer as admin `/ready`)
//! - `GET /healthz/live` — 200 while the [`Liveness`] check passes, 503
//!   with its reason otherwise
use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use http::{header, HeaderValue, Method, Response, StatusCode};
use hyper::{body::Incoming, service::service_fn};
use mesh_admin::{
    http_serve::{serve_http1, HttpLimits},
    listen::Listener,
};
use serde_json::json;
use tokio::{net::TcpListener, sync::watch};

use crate::body;

/// Whether the process can still do its work; the kubelet restarts the
/// pod when it says no for long enough. The waypoint wires it to what the
/// request path reports about itself; any `Fn() -> Result<(), String>`
/// will do.
pub trait Liveness: Send + Sync + 'static {
    /// `Err(reason)`: not alive.
    fn check(&self) -> Result<(), String>;
}

impl<F: Fn() -> Result<(), String> + Send + Sync + 'static> Liveness for F {
    fn check(&self) -> Result<(), String> {
        self()
    }
}

/// Alive as long as the probe port answers.
pub fn always_alive() -> Arc<dyn Liveness> {
    Arc::new(|| Ok(()))
}

/// What the probe port reads.
#[derive(Clone)]
pub struct ProbeState {
    /// Every xDS type synced once.
    pub synced: Arc<AtomicBool>,
    /// True once draining.
    pub draining: watch::Receiver<bool>,
    pub liveness: Arc<dyn Liveness>,
}

/// Readiness: synced and not draining (shared with admin `/ready`).
pub fn readiness(synced: &AtomicBool, draining: bool) -> (StatusCode, serde_json::Value) {
    if draining {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": "draining"}),
        )
    } else if synced.load(Ordering::Relaxed) {
        (StatusCode::OK, json!({"ready": true}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": "waiting for xDS"}),
        )
    }
}

/// One probe answer.
pub fn route(state: &ProbeState, method: &Method, path: &str) -> (StatusCode, serde_json::Value) {
    let known = matches!(path, "/healthz/ready" | "/healthz/live");
    if !known {
        return (
            StatusCode::NOT_FOUND,
            json!({"endpoints": ["GET /healthz/ready", "GET /healthz/live"]}),
        );
    }
    if method != Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": format!("{path} takes GET")}),
        );
    }
    if path == "/healthz/ready" {
        return readiness(&state.synced, *state.draining.borrow());
    }
    match state.liveness.check() {
        Ok(()) => (StatusCode::OK, json!({"alive": true})),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"alive": false, "reason": reason}),
        ),
    }
}

/// Serves the probe port until the task is dropped (it keeps answering
/// while draining, so the kubelet sees 503).
pub async fn serve(listener: TcpListener, state: ProbeState) {
    let state = Arc::new(state);
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let (status, value) = route(&state, req.method(), req.uri().path());
        let mut resp = Response::new(body::full(value.to_string()));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        async move { Ok::<_, Infallible>(resp) }
    });
    let limits = HttpLimits::small(Some(super::PER_SOURCE));
    let listener = Listener::new(listener, limits.listen, "probe");
    serve_http1(listener, limits, service, std::future::pending()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(liveness: Arc<dyn Liveness>) -> (ProbeState, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let state = ProbeState {
            synced: Arc::new(AtomicBool::new(false)),
            draining: rx,
            liveness,
        };
        (state, tx)
    }

    #[test]
    fn serves_only_probes_never_admin() {
        let (s, _tx) = state(always_alive());
        for (method, path) in [
            (Method::POST, "/quitquitquit"),
            (Method::POST, "/logging"),
            (Method::GET, "/logging"),
            (Method::GET, "/config_dump"),
            (Method::GET, "/ready"),
        ] {
            assert_eq!(route(&s, &method, path).0, StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(
            route(&s, &Method::POST, "/healthz/ready").0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn ready_follows_sync_and_drain_and_live_follows_the_check() {
        let dead = Arc::new(AtomicBool::new(false));
        let d = dead.clone();
        let (s, tx) = state(Arc::new(move || {
            if d.load(Ordering::Relaxed) {
                Err("request handling panicked".to_string())
            } else {
                Ok(())
            }
        }));
        let ready = |s: &ProbeState| route(s, &Method::GET, "/healthz/ready").0;
        assert_eq!(ready(&s), StatusCode::SERVICE_UNAVAILABLE);
        s.synced.store(true, Ordering::Relaxed);
        assert_eq!(ready(&s), StatusCode::OK);
        tx.send_replace(true);
        assert_eq!(ready(&s), StatusCode::SERVICE_UNAVAILABLE);

        assert_eq!(route(&s, &Method::GET, "/healthz/live").0, StatusCode::OK);
        dead.store(true, Ordering::Relaxed);
        let (status, body) = route(&s, &Method::GET, "/healthz/live");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "request handling panicked");
    }
}
