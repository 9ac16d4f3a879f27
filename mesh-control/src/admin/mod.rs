//! The control plane's admin HTTP endpoint (`--admin-addr`, default
//! 127.0.0.1:15000, as Istio's) and its readiness endpoint
//! (`--ready-addr`, default 0.0.0.0:15021). Shapes are the contract in
//! docs/contracts/control-admin.md; `meshctl` is the main reader.
//!
//! - `GET /debug/syncz` — per connected proxy and type: SYNCED / NOT SENT /
//!   STALE / NACKED ([`syncz`])
//! - `GET /config_dump` — the mesh state, the xDS resources as served and
//!   the raw Istio documents ([`config_dump`], [`xds_json`])
//! - `GET /logging`, `POST /logging?level=<lvl>` or `?<module>=<lvl>` —
//!   the log filter, changed at runtime
//! - `POST /quitquitquit` — stop serving, let xDS streams end, exit 0
//! - `GET /healthz/ready` — 200 once the state is loaded and gRPC is
//!   served, 503 before and while stopping (on both addresses)
pub mod config_dump;
pub mod envoy_json;
pub mod syncz;
pub mod xds_json;

use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use crate::{
    app::logging::LogControl, model::MeshState, serve::ConnectedProxies, source::RawResource,
    translate::workload::ConvertOptions,
};

/// How long open admin connections get to finish (e.g. the response to
/// `/quitquitquit`) after the endpoint stops accepting.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Everything the admin endpoints read or act on.
pub struct AdminState {
    pub proxies: Arc<ConnectedProxies>,
    /// The published mesh state.
    pub state: watch::Receiver<Arc<MeshState>>,
    /// The raw Istio documents of the last good load.
    pub raw: watch::Receiver<Arc<Vec<RawResource>>>,
    /// Problems of the last rejected load, if the last load failed.
    pub last_error: watch::Receiver<Option<String>>,
    /// How the served xDS resources are built from the state.
    pub convert: ConvertOptions,
    /// `None` when no global subscriber was installed (tests).
    pub log: Option<Arc<LogControl>>,
    /// True while the control plane serves (readiness).
    pub ready: watch::Receiver<bool>,
    /// Set by `/quitquitquit`; the app shuts down when it turns true.
    pub quit: watch::Sender<bool>,
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    /// Everything (`--admin-addr`).
    Admin,
    /// Only `/healthz/ready` (`--ready-addr`, reachable from outside).
    Ready,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let text = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
    respond(status, "application/json", text + "\n")
}

fn text_response(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into() + "\n")
}

fn ready_response(state: &AdminState) -> Response<Body> {
    if *state.ready.borrow() {
        json_response(StatusCode::OK, &json!({"ready": true}))
    } else {
        json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"ready": false}))
    }
}

fn logging(state: &AdminState, method: &Method, query: Option<&str>) -> Response<Body> {
    let (status, body) = mesh_admin::logging::handle(state.log.as_deref(), method, query);
    text_response(status, body)
}

const ADMIN_ENDPOINTS: &[&str] = &[
    "GET /debug/syncz",
    "GET /config_dump",
    "GET /logging",
    "POST /logging?level=<lvl> | ?<module>=<lvl>",
    "POST /quitquitquit",
    "GET /healthz/ready",
];

fn route(state: &AdminState, which: Endpoints, req: &Request<Incoming>) -> Response<Body> {
    let (method, path) = (req.method(), req.uri().path());
    let allowed: &[Method] = match (which, path) {
        (_, "/healthz/ready") => &[Method::GET],
        (Endpoints::Ready, _) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"endpoints": ["GET /healthz/ready"]}),
            )
        }
        (_, "/debug/syncz" | "/config_dump") => &[Method::GET],
        (_, "/logging") => &[Method::GET, Method::POST],
        (_, "/quitquitquit") => &[Method::POST],
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"endpoints": ADMIN_ENDPOINTS}),
            )
        }
    };
    if !allowed.contains(method) {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        return text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} takes {}", names.join(" or ")),
        );
    }
    match path {
        "/healthz/ready" => ready_response(state),
        "/debug/syncz" => json_response(StatusCode::OK, &syncz::syncz(&state.proxies)),
        "/config_dump" => json_response(StatusCode::OK, &config_dump::config_dump(state)),
        "/logging" => logging(state, method, req.uri().query()),
        "/quitquitquit" => {
            tracing::info!("/quitquitquit: shutting down");
            state.quit.send_replace(true);
            text_response(StatusCode::OK, "OK")
        }
        _ => unreachable!("paths are matched above"),
    }
}

/// Serves `which` endpoints on `listener` until `shutdown` completes; open
/// connections then get [`CLOSE_GRACE`] to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    which: Endpoints,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, endpoints = ?which, "admin endpoint listening");
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let resp = route(&state, which, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "admin connection ended");
            }
        });
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_is_503() {
        let (_, state) = watch::channel(Arc::new(MeshState::default()));
        let (_, raw) = watch::channel(Arc::new(vec![]));
        let (_, last_error) = watch::channel(None);
        let (ready_tx, ready) = watch::channel(false);
        let admin = AdminState {
            proxies: Arc::new(ConnectedProxies::new()),
            state,
            raw,
            last_error,
            convert: ConvertOptions::default(),
            log: None,
            ready,
            quit: watch::channel(false).0,
        };
        assert_eq!(
            ready_response(&admin).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready_tx.send_replace(true);
        assert_eq!(ready_response(&admin).status(), StatusCode::OK);
    }
}
