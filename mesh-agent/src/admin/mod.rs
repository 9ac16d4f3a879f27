//! Admin endpoint (default 127.0.0.1:15000, as Istio's): what the agent
//! carried, what the kernel counted, what it received from the control
//! plane, its log filter, readiness and a graceful stop. JSON shapes used by
//! meshctl are fixed in `docs/contracts/agent-admin.md`.
//!
//! - `GET /stats/connections` — totals, recent and active connections (JSON)
//! - `GET /stats/capture` — programs, kernel counters, enrolled pods (JSON)
//! - `GET /stats/mesh` — xDS state, workloads known, certificates held (JSON)
//! - `GET /config_dump` — workloads, services, policies, certificates (JSON)
//! - `GET /logging` — the log filter (text); `POST /logging?level=<lvl>` or
//!   `?<target>=<lvl>` (`access=off` stops the access log) changes it and
//!   answers the new filter; a bad level is a 400 naming it
//! - `POST /quitquitquit` — stop accepting, drain, exit 0 (see shutdown.rs)
//! - `GET /healthz/ready` — 200 while serving, 503 before and while draining;
//!   also served alone on `--ready-addr` (0.0.0.0:15021)
//!
//! Reads are GET, changes POST; any other method is a 405.
pub mod config_dump;
pub mod http;
pub mod mesh_stats;

use std::{net::SocketAddr, sync::Arc};

use hyper::{Method, Response, StatusCode};
use mesh_admin::http_serve::HttpLimits;
use serde_json::json;
use tokio::net::TcpListener;

use self::http::{json_response, text_response, Body, Req};
use crate::{
    capture::{
        enroll::Enroller, loader::ProgramState, maps, probes::ProbePorts, strict::StrictPods,
    },
    logging::LogControl,
    metrics::Metrics,
    shutdown::{Reason, Shutdown},
    state::connections::ConnectionStats,
    state::runtime::MeshRuntime,
};

/// The kernel side, absent in tests.
pub struct CaptureState {
    pub programs: Vec<ProgramState>,
    pub enroller: std::sync::Mutex<Enroller>,
    pub kernel_stats: maps::StatsMap,
    pub strict: std::sync::Mutex<StrictPods>,
    pub probes: std::sync::Mutex<ProbePorts>,
}

pub struct AdminState {
    pub stats: Arc<ConnectionStats>,
    /// Set when a control plane feeds the agent.
    pub mesh: Option<Arc<MeshRuntime>>,
    pub capture: Option<CaptureState>,
    /// Runtime control of the log filter (absent when the global
    /// subscriber is not ours, as in tests).
    pub log: Option<Arc<LogControl>>,
    pub shutdown: Arc<Shutdown>,
}

const ENDPOINTS: &[&str] = &[
    "GET /stats/connections",
    "GET /stats/capture",
    "GET /stats/mesh",
    "GET /config_dump",
    "GET /logging",
    "POST /logging?level=<lvl> | ?<target>=<lvl>",
    "POST /quitquitquit",
    "GET /healthz/ready",
];

pub fn route(state: &AdminState, req: &Req<'_>) -> Response<Body> {
    let allowed: &[Method] = match req.path {
        "/logging" => &[Method::GET, Method::POST],
        "/quitquitquit" => &[Method::POST],
        "/healthz/ready" | "/stats/connections" | "/stats/capture" | "/stats/mesh"
        | "/config_dump" => &[Method::GET],
        _ => return json_response(StatusCode::NOT_FOUND, json!({"endpoints": ENDPOINTS})),
    };
    if !allowed.contains(req.method) {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": format!("{} takes {}", req.path, names.join(" or "))}),
        );
    }
    match req.path {
        "/healthz/ready" => ready(&state.shutdown),
        "/stats/connections" => json_response(
            StatusCode::OK,
            json!({
                "totals": state.stats.totals(),
                "recent": state.stats.recent(),
                "active": state.stats.active(),
            }),
        ),
        "/stats/mesh" => match &state.mesh {
            Some(mesh) => json_response(StatusCode::OK, mesh_stats::mesh_stats(mesh)),
            None => json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "no control plane configured"}),
            ),
        },
        "/stats/capture" => capture(state.capture.as_ref()),
        "/config_dump" => json_response(StatusCode::OK, config_dump(state.mesh.as_deref())),
        "/logging" => logging(state.log.as_deref(), req),
        "/quitquitquit" => {
            tracing::info!("quitquitquit: draining");
            state.shutdown.trigger(Reason::Quit);
            text_response(StatusCode::OK, "draining")
        }
        _ => unreachable!("every path with methods is handled above"),
    }
}

fn ready(shutdown: &Shutdown) -> Response<Body> {
    if shutdown.is_ready() {
        json_response(StatusCode::OK, json!({"ready": true}))
    } else {
        let why = if shutdown.is_triggered() {
            "draining"
        } else {
            "starting"
        };
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": why}),
        )
    }
}

fn capture(capture: Option<&CaptureState>) -> Response<Body> {
    let Some(capture) = capture else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "no capture programs in this process"}),
        );
    };
    let counters: serde_json::Map<String, serde_json::Value> =
        match maps::read_stats(&capture.kernel_stats) {
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
    let enrolled = capture
        .enroller
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .list();
    let strict = capture
        .strict
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .list();
    let probe_ports: Vec<String> = capture
        .probes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .list()
        .into_iter()
        .map(|(ip, port)| std::net::SocketAddr::new(ip, port).to_string())
        .collect();
    json_response(
        StatusCode::OK,
        json!({
            "programs": capture.programs,
            "kernel_counters": counters,
            "enrolled": enrolled,
            "strict_pods": strict,
            "probe_ports": probe_ports,
        }),
    )
}

fn config_dump(mesh: Option<&MeshRuntime>) -> serde_json::Value {
    let Some(mesh) = mesh else {
        return json!({
            "node": null, "xds": null, "workloads": [], "services": [],
            "policies": [], "certificates": [],
        });
    };
    let view = mesh.view.borrow().clone();
    let snapshot = mesh.xds.borrow().clone();
    let certs: Vec<_> = mesh
        .store
        .identities()
        .iter()
        .filter_map(|id| mesh.store.get(id))
        .collect();
    let status = config_dump::XdsStatus {
        address: &mesh.xds_address,
        connected: snapshot.connected,
        last_error: snapshot.last_error.as_deref(),
        last_update_unix_ms: mesh
            .xds_updated_unix_ms
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    let mut dump = config_dump::config_dump(
        &view,
        &status,
        snapshot.authorizations().map(|(_, p)| p),
        &certs,
    );
    // What the kernel enforces at connect(), and why (policy/kernel.rs).
    dump["kernel_denies"] = mesh_stats::kernel_denies(mesh);
    dump
}

fn logging(log: Option<&LogControl>, req: &Req<'_>) -> Response<Body> {
    let (status, body) = mesh_admin::logging::handle(log, req.method, req.query);
    text_response(status, body)
}

/// Connections one source may hold on the readiness and metrics ports,
/// which listen on the node's address: the kubelet and Prometheus each need
/// a few; a pod holding more would starve them.
const PROBE_PER_SOURCE: usize = 8;

/// The admin endpoint on `addr`.
pub async fn serve(addr: SocketAddr, state: Arc<AdminState>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "admin endpoint ready");
    // Loopback only by default: no per-source cap needed.
    http::spawn(
        listener,
        HttpLimits::small(None),
        Arc::new(move |req| route(&state, req)),
    );
    Ok(())
}

/// Readiness alone, for probes from outside the node (`--ready-addr`).
pub async fn serve_ready(
    addr: SocketAddr,
    shutdown: Arc<Shutdown>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "readiness endpoint ready");
    Ok(http::spawn(
        listener,
        HttpLimits::small(Some(PROBE_PER_SOURCE)),
        Arc::new(move |req| match (req.method, req.path) {
            (&Method::GET, "/healthz/ready") => ready(&shutdown),
            (_, "/healthz/ready") => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "/healthz/ready takes GET"}),
            ),
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"endpoints": ["GET /healthz/ready"]}),
            ),
        }),
    ))
}

/// Prometheus metrics at `/metrics` and `/stats/prometheus`.
pub async fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics endpoint ready");
    http::spawn(
        listener,
        HttpLimits::small(Some(PROBE_PER_SOURCE)),
        Arc::new(move |req| match (req.method, req.path) {
            (&Method::GET, "/metrics" | "/stats/prometheus") => match metrics.encode() {
                Ok(text) => http::response(StatusCode::OK, crate::metrics::CONTENT_TYPE, text),
                Err(_) => text_response(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed"),
            },
            (_, "/metrics" | "/stats/prometheus") => json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": format!("{} takes GET", req.path)}),
            ),
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"endpoints": ["GET /metrics", "GET /stats/prometheus"]}),
            ),
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests;
