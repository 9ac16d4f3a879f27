//! Responses the waypoint makes itself (404 NR, 403 RBAC, 504 UT, fault
//! aborts, upstream errors), turned into gRPC trailers-only answers for
//! gRPC requests as Envoy does.
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};

use crate::body::{self, Body};

/// Whether the request is gRPC (`content-type: application/grpc*`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Envoy's HTTP → gRPC status mapping for local replies.
pub fn grpc_status_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// A local reply of `status` with a text body (or gRPC trailers-only).
pub fn local(grpc: bool, status: StatusCode, text: &str) -> Response<Body> {
    if grpc {
        return grpc_reply(grpc_status_for(status), text);
    }
    let mut r = Response::new(body::full(text.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// A trailers-only gRPC answer with `grpc-status`.
pub fn grpc_reply(code: u32, message: &str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("grpc-message", v);
    }
    r
}

pub fn local_for<B>(req: &Request<B>, status: StatusCode, text: &str) -> Response<Body> {
    local(is_grpc(req.headers()), status, text)
}
