//! Admin endpoint (default 127.0.0.1:15000, as Istio's): what the agent
//! carried, what the kernel counted, what is enrolled, and readiness.
//!
//! - `GET /stats/connections` — totals and recent connections (JSON)
//! - `GET /stats/capture` — programs, kernel counters, enrolled pods (JSON)
//! - `GET /stats/mesh` — xDS state, workloads known, certificates held (JSON)
//! - `GET /healthz/ready` — 200 once the capture is installed and listening
use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::{
    capture::{enroll::Enroller, loader::ProgramState, maps},
    state::connections::ConnectionStats,
};

pub struct AdminState {
    pub stats: Arc<ConnectionStats>,
    /// Set when a control plane feeds the agent.
    pub mesh: Option<Arc<crate::outbound::proxy::MeshRuntime>>,
    pub programs: Vec<ProgramState>,
    pub enroller: std::sync::Mutex<Enroller>,
    pub kernel_stats: maps::StatsMap,
    pub strict: std::sync::Mutex<crate::capture::strict::StrictPods>,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn route(state: &AdminState, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return json_response(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "GET only"}));
    }
    match req.uri().path() {
        "/healthz/ready" => json_response(StatusCode::OK, json!({"ready": true})),
        "/stats/connections" => json_response(
            StatusCode::OK,
            json!({"totals": state.stats.totals(), "recent": state.stats.recent()}),
        ),
        "/stats/mesh" => match &state.mesh {
            Some(mesh) => json_response(StatusCode::OK, mesh.admin_json()),
            None => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "no control plane configured"}),
            ),
        },
        "/stats/capture" => {
            let counters: serde_json::Map<String, serde_json::Value> =
                match maps::read_stats(&state.kernel_stats) {
                    Ok(c) => c
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), json!(v)))
                        .collect(),
                    Err(e) => {
                        return json_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            json!({"error": e.to_string()}),
                        )
                    }
                };
            let enrolled = state
                .enroller
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .list();
            let strict = state
                .strict
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .list();
            json_response(
                StatusCode::OK,
                json!({
                    "programs": state.programs,
                    "kernel_counters": counters,
                    "enrolled": enrolled,
                    "strict_pods": strict,
                }),
            )
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"endpoints": ["/stats/connections", "/stats/capture", "/stats/mesh", "/healthz/ready"]}),
        ),
    }
}

pub async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin endpoint ready");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let resp = route(&state, &req);
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
    });
    Ok(())
}
