//! The waypoint admin endpoint (`--admin-addr`, 127.0.0.1:15000 as
//! Istio's: it can stop the waypoint and change its logging, so it is not
//! on the pod address), what `meshctl proxy-config` reads (docs/contracts/waypoint-admin.md).
//! The kubelet uses the probe port ([`probe`], :15021) and Prometheus the
//! metrics port ([`metrics`], :15020), which serve nothing that changes
//! state.
//!
//! - `GET /config_dump` — listeners, routes (config; a gateway's bound
//!   listeners with their filter chains) + clusters, endpoints
//!   (upstream), secrets (the certificates it presents and trusts, never
//!   keys: [`secrets`]), JSON
//! - `GET /metrics`, `GET /stats/prometheus` — Prometheus text
//! - `GET /logging`, `POST /logging?level=<lvl>|<target>=<lvl>` — log filter
//! - `GET /ready` — 200 once LDS, RDS, CDS, EDS and Address were each
//!   received once; 503 before and while draining
//! - `POST /quitquitquit` — drain and exit
pub mod metrics;
pub mod probe;
pub mod secrets;

use std::{
    convert::Infallible,
    sync::{atomic::AtomicBool, Arc},
};

use http::{header, HeaderValue, Method, Response, StatusCode};
use hyper::{body::Incoming, service::service_fn};
use mesh_admin::{
    drain::{Drain, Reason},
    http_serve::{serve_http1, HttpLimits},
    listen::Listener,
    log_control::LogControl,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::{
    body::{self, Body},
    config::dump,
    gateway::ListenerManager,
    route::Proxy,
};

type DumpFn = Box<dyn Fn() -> Value + Send + Sync>;
pub type TextFn = Box<dyn Fn() -> String + Send + Sync>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Connections one source may hold on the probe and metrics ports: the
/// kubelet and Prometheus need a few; anyone holding more would starve them.
const PER_SOURCE: usize = 8;

pub struct AdminState {
    pub proxy: Arc<Proxy>,
    /// `--role gateway`: the bound listeners, whose chains and routes the
    /// dump shows instead of the waypoint's one listener.
    pub gateway: Option<Arc<ListenerManager>>,
    /// The workload certificate and trust roots (`None` without a CA),
    /// listed in the dump's `secrets` with a gateway's TLS certificates.
    pub certificates: Option<Arc<mesh_hbone::CertStore>>,
    /// `{"clusters": [..], "endpoints": [..]}` (ClusterManager::dump).
    pub clusters: DumpFn,
    /// Prometheus text (Telemetry::encode_metrics).
    pub metrics: TextFn,
    pub log: Option<Arc<LogControl>>,
    /// Every xDS type synced once.
    pub synced: Arc<AtomicBool>,
    /// Triggered to drain and exit.
    pub shutdown: Arc<Drain>,
}

const ENDPOINTS: &[&str] = &[
    "GET /config_dump",
    "GET /metrics",
    "GET /stats/prometheus",
    "GET /logging",
    "POST /logging?level=<lvl> | ?<target>=<lvl>",
    "GET /ready",
    "POST /quitquitquit",
];

/// One admin answer: status, content type, body.
pub fn route(
    state: &AdminState,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> (StatusCode, &'static str, String) {
    const JSON: &str = "application/json";
    const TEXT: &str = "text/plain; charset=utf-8";
    let allowed: &[Method] = match path {
        "/logging" => &[Method::GET, Method::POST],
        "/quitquitquit" => &[Method::POST],
        "/config_dump" | "/metrics" | "/stats/prometheus" | "/ready" => &[Method::GET],
        _ => {
            return (
                StatusCode::NOT_FOUND,
                JSON,
                json!({"endpoints": ENDPOINTS}).to_string(),
            )
        }
    };
    if !allowed.contains(method) {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            JSON,
            json!({"error": format!("{path} takes {}", names.join(" or "))}).to_string(),
        );
    }
    match path {
        "/config_dump" => (StatusCode::OK, JSON, config_dump(state).to_string()),
        "/metrics" | "/stats/prometheus" => (StatusCode::OK, OPENMETRICS, (state.metrics)()),
        "/logging" => {
            let (status, text) = mesh_admin::logging::handle(state.log.as_deref(), method, query);
            (status, TEXT, text)
        }
        "/ready" => {
            let (status, value) = probe::readiness(&state.synced, state.shutdown.is_triggered());
            (status, JSON, value.to_string())
        }
        "/quitquitquit" => {
            tracing::info!("quitquitquit: draining");
            state.shutdown.trigger(Reason::Quit);
            (StatusCode::OK, TEXT, "draining".into())
        }
        _ => unreachable!("every path with methods is handled above"),
    }
}

pub fn config_dump(state: &AdminState) -> Value {
    let cfg = state.proxy.config();
    let mut out = match &state.gateway {
        Some(g) => {
            let (listeners, routes) = g.dump();
            json!({"listeners": listeners, "routes": routes})
        }
        None => json!({
            "listeners": dump::listeners(&cfg),
            "routes": dump::routes(&cfg),
            "generation": cfg.generation,
        }),
    };
    let upstream = (state.clusters)();
    for key in ["clusters", "endpoints"] {
        out[key] = upstream.get(key).cloned().unwrap_or_else(|| json!([]));
    }
    out["secrets"] = secrets::dump(
        state.certificates.as_deref(),
        state.gateway.as_deref(),
        std::time::SystemTime::now(),
    );
    out
}

/// Serves the admin endpoint until shutdown.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let mut stop = state.shutdown.subscribe();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let (status, ctype, text) =
            route(&state, req.method(), req.uri().path(), req.uri().query());
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        async move { Ok::<Response<Body>, Infallible>(resp) }
    });
    // Loopback by default: no per-source cap needed.
    let limits = HttpLimits::small(None);
    let listener = Listener::new(listener, limits.listen, "admin");
    let stopped = async move { crate::server::stopped(&mut stop).await };
    serve_http1(listener, limits, service, stopped).await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::{config::ActiveConfig, route::Deps};

    struct Nothing;
    impl crate::upstream::Upstream for Nothing {
        fn send(
            &self,
            c: &str,
            _r: http::Request<Body>,
            _x: crate::upstream::SendContext,
        ) -> futures::future::BoxFuture<
            'static,
            Result<crate::upstream::UpstreamResponse, crate::upstream::UpstreamError>,
        > {
            let c = c.to_string();
            Box::pin(async move { Err(crate::upstream::UpstreamError::UnknownCluster(c)) })
        }
        fn retry_permit(&self, _c: &str) -> Option<crate::upstream::RetryPermit> {
            None
        }
    }

    fn state() -> AdminState {
        AdminState {
            proxy: Proxy::new(
                Arc::new(ActiveConfig::default()),
                Deps::new(Arc::new(Nothing)),
            ),
            gateway: None,
            certificates: None,
            clusters: Box::new(
                || json!({"clusters": [{"name": "outbound|9080||reviews"}], "endpoints": []}),
            ),
            metrics: Box::new(|| "istio_requests_total 0\n".into()),
            log: None,
            synced: Arc::new(AtomicBool::new(false)),
            shutdown: Arc::new(Drain::default()),
        }
    }

    #[test]
    fn ready_follows_sync_and_drain() {
        let s = state();
        assert_eq!(
            route(&s, &Method::GET, "/ready", None).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        s.synced.store(true, Ordering::Relaxed);
        assert_eq!(route(&s, &Method::GET, "/ready", None).0, StatusCode::OK);
        assert_eq!(
            route(&s, &Method::GET, "/quitquitquit", None).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            route(&s, &Method::POST, "/quitquitquit", None).0,
            StatusCode::OK
        );
        assert!(s.shutdown.is_triggered());
        assert_eq!(
            route(&s, &Method::GET, "/ready", None).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn config_dump_has_the_contract_keys() {
        let s = state();
        let (status, _, text) = route(&s, &Method::GET, "/config_dump", None);
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_str(&text).unwrap();
        for k in ["listeners", "routes", "clusters", "endpoints", "secrets"] {
            assert!(v[k].is_array(), "{k} in {v}");
        }
        assert_eq!(v["clusters"][0]["name"], "outbound|9080||reviews");
        assert_eq!(
            route(&s, &Method::GET, "/metrics", None).2,
            "istio_requests_total 0\n"
        );
        assert_eq!(
            route(&s, &Method::GET, "/nope", None).0,
            StatusCode::NOT_FOUND
        );
    }
}
