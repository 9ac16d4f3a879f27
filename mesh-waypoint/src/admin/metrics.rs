//! The metrics port (`--metrics-addr`, :15020, as Istio's): Prometheus
//! text at `GET /metrics` and `GET /stats/prometheus`, nothing else, on
//! the pod address for scrapers.
use std::{convert::Infallible, sync::Arc};

use http::{header, HeaderValue, Method, Response, StatusCode};
use hyper::{body::Incoming, service::service_fn};
use mesh_admin::{
    http_serve::{serve_http1, HttpLimits},
    listen::Listener,
};
use tokio::net::TcpListener;

use super::{TextFn, OPENMETRICS};
use crate::body;

/// One answer: status, content type, body.
pub fn route(metrics: &TextFn, method: &Method, path: &str) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match (method, path) {
        (&Method::GET, "/metrics" | "/stats/prometheus") => {
            (StatusCode::OK, OPENMETRICS, metrics())
        }
        (_, "/metrics" | "/stats/prometheus") => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            format!("{path} takes GET\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            TEXT,
            "GET /metrics | GET /stats/prometheus\n".into(),
        ),
    }
}

/// Serves the metrics port until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: TextFn) {
    let metrics = Arc::new(metrics);
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let (status, ctype, text) = route(&metrics, req.method(), req.uri().path());
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        async move { Ok::<_, Infallible>(resp) }
    });
    let limits = HttpLimits::small(Some(super::PER_SOURCE));
    let listener = Listener::new(listener, limits.listen, "metrics");
    serve_http1(listener, limits, service, std::future::pending()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_metrics_and_nothing_else() {
        let m: TextFn = Box::new(|| "istio_requests_total 0\n".into());
        assert_eq!(
            route(&m, &Method::GET, "/stats/prometheus").2,
            "istio_requests_total 0\n"
        );
        assert_eq!(
            route(&m, &Method::POST, "/quitquitquit").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&m, &Method::GET, "/config_dump").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&m, &Method::POST, "/metrics").0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
