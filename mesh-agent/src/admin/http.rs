//! The small HTTP/1 servers of the agent (admin, readiness, metrics): a
//! synchronous handler per request, responses built with the helpers here,
//! served through mesh-admin's limited accept loop.
use std::{convert::Infallible, sync::Arc};

use http_body_util::Full;
use hyper::{body::Bytes, header::HeaderValue, service::service_fn, Method, Response, StatusCode};
use mesh_admin::{
    http_serve::{serve_http1, HttpLimits},
    listen::Listener,
};
use tokio::net::TcpListener;

pub type Body = Full<Bytes>;

/// What a handler sees of a request.
pub struct Req<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

pub type Handler = Arc<dyn Fn(&Req<'_>) -> Response<Body> + Send + Sync>;

pub fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    resp
}

pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    response(status, "application/json", body.to_string())
}

pub fn text_response(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    response(status, "text/plain; charset=utf-8", body)
}

/// Serves `handler` on `listener` under `limits` (connection caps,
/// header-read timeout, connection age) until the returned task is aborted.
pub fn spawn(
    listener: TcpListener,
    limits: HttpLimits,
    handler: Handler,
) -> tokio::task::JoinHandle<()> {
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let resp = handler(&Req {
            method: req.method(),
            path: req.uri().path(),
            query: req.uri().query(),
        });
        async move { Ok::<_, Infallible>(resp) }
    });
    let listener = Listener::new(listener, limits.listen, "agent http");
    tokio::spawn(serve_http1(
        listener,
        limits,
        service,
        std::future::pending(),
    ))
}
