//! Virtual host and route selection: the path is normalised first
//! ([`path_normalize`](super::path_normalize); a path that cannot be → 400
//! with flag `DPE`), the HBONE tunnel's authority (or `Host` on the plain
//! listener) picks the virtual host, the first matching route wins;
//! nothing → 404 with flag `NR`. A `require_tls` virtual host answers a
//! request that arrived in plain text with 301 to `https://` (Envoy's
//! behaviour), before any route.
use std::sync::Arc;

use futures::future::BoxFuture;
use http::{header, Request, StatusCode};

use super::{
    exchange::Exchange,
    path_normalize, reply,
    stage::{Stage, Step},
};
use crate::{
    body::Body,
    config::{
        matcher::RequestView,
        table::{PathMatch, PathRedirect, Redirect, RouteMatch, VirtualHost},
        RouteTable,
    },
};

/// Plain text where the virtual host requires TLS (an HBONE tunnel is
/// mutual TLS already).
fn needs_tls(vh: &VirtualHost, ex: &Exchange) -> bool {
    vh.require_tls && !ex.downstream.tls && ex.downstream.tunnel_authority.is_none()
}

/// 301 to `https://` + the same host (a port 80 dropped) and path.
fn https_redirect(req: &Request<Body>) -> http::Response<Body> {
    let to_https = Redirect {
        scheme: Some("https".into()),
        host: None,
        port: None,
        path: PathRedirect::Keep,
        status: StatusCode::MOVED_PERMANENTLY.as_u16(),
        strip_query: false,
    };
    let any = RouteMatch {
        path: PathMatch::Prefix("/".into()),
        case_sensitive: true,
        headers: Vec::new(),
        query: Vec::new(),
        source_ips: None,
    };
    super::rewrite::redirect_response(&to_https, &any, req)
}

pub struct Select {
    pub table: Arc<RouteTable>,
}

/// The host a request is addressed to on the plain listener.
pub fn request_host<B>(req: &Request<B>) -> String {
    host_of(req).to_string()
}

/// [`request_host`], borrowed from the request.
fn host_of<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_default()
}

/// A [`RequestView`] of `req` with `authority` as `:authority`.
pub fn view<'a, B>(req: &'a Request<B>, authority: &'a str) -> RequestView<'a> {
    RequestView {
        method: req.method(),
        authority,
        path: req.uri().path_and_query().map_or("/", |p| p.as_str()),
        scheme: req.uri().scheme_str().unwrap_or("http"),
        headers: req.headers(),
    }
}

impl Stage for Select {
    fn run(&self, mut req: Request<Body>, ex: Arc<Exchange>) -> BoxFuture<'static, Step> {
        // Every later stage (RBAC, router) and the upstream see this path.
        match path_normalize::normalize_uri(req.uri()) {
            Ok(None) => {}
            Ok(Some(normal)) => *req.uri_mut() = normal,
            Err(error) => {
                tracing::debug!(%error, "request path refused");
                ex.flag("DPE");
                let resp = reply::local_for(&req, StatusCode::BAD_REQUEST, "Bad Request");
                return Box::pin(async move { Step::Respond(resp) });
            }
        }
        let host = host_of(&req);
        let vhost_key = match ex.downstream.tunnel_authority {
            Some(a) => std::borrow::Cow::Owned(a.to_string()),
            None => std::borrow::Cow::Borrowed(host),
        };
        let step = match self.table.select(&vhost_key) {
            None => {
                tracing::debug!(host = %vhost_key, "no virtual host");
                ex.flag("NR");
                Step::Respond(reply::local_for(&req, StatusCode::NOT_FOUND, ""))
            }
            Some(vh) if needs_tls(vh, &ex) => {
                ex.set_vhost(vh.clone());
                Step::Respond(https_redirect(&req))
            }
            Some(vh) => {
                ex.set_vhost(vh.clone());
                match vh.find(&view(&req, host), ex.downstream.peer.ip) {
                    Some(route) => {
                        ex.set_route(vh.clone(), route.clone());
                        Step::Next(req)
                    }
                    None => {
                        tracing::debug!(vhost = %vh.name, path = %req.uri().path(), "no route");
                        ex.flag("NR");
                        Step::Respond(reply::local_for(&req, StatusCode::NOT_FOUND, ""))
                    }
                }
            }
        };
        Box::pin(async move { step })
    }
}
