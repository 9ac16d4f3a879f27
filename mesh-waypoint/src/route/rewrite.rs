//! Path and host rewrites of forwarded requests, and the redirect and
//! direct responses (which rewrite the same way).
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};

use super::select::request_host;
use crate::{
    body::{self, Body},
    config::table::{Forward, PathMatch, PathRedirect, Redirect, RouteMatch},
};

fn split_query(pq: &str) -> (&str, Option<&str>) {
    match pq.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pq, None),
    }
}

fn join_query(path: String, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// The new path for `prefix_rewrite` (replacing what the route matched) or
/// `regex_rewrite` (every match in the path); None when neither applies.
pub fn rewritten_path(f: &Forward, m: &RouteMatch, path_and_query: &str) -> Option<String> {
    let (path, query) = split_query(path_and_query);
    if let Some(new_prefix) = &f.prefix_rewrite {
        let matched = match &m.path {
            PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) => p.len().min(path.len()),
            PathMatch::Exact(_) => path.len(),
            PathMatch::Regex(_) => return None,
        };
        return Some(join_query(
            format!("{new_prefix}{}", &path[matched..]),
            query,
        ));
    }
    let (re, sub) = f.regex_rewrite.as_ref()?;
    Some(join_query(
        re.replace_all(path, sub.as_str()).into_owned(),
        query,
    ))
}

/// Sets the request's path (keeping scheme/authority if absolute).
pub fn set_path<B>(req: &mut Request<B>, path_and_query: &str) {
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// Sets the authority the upstream request carries (`Host`, and the URI's
/// authority when absolute).
pub fn set_host<B>(req: &mut Request<B>, host: &str) {
    if let Ok(v) = HeaderValue::from_str(host) {
        req.headers_mut().insert(header::HOST, v);
    }
    if req.uri().authority().is_some() {
        let mut parts = req.uri().clone().into_parts();
        if let Ok(a) = host.parse() {
            parts.authority = Some(a);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
}

/// The `Location` of a redirect, Envoy-style.
pub fn redirect_location<B>(r: &Redirect, m: &RouteMatch, req: &Request<B>) -> String {
    // Envoy: `host_redirect` replaces the whole host (port included);
    // `port_redirect` replaces only the port; a scheme change drops a
    // default port (80 / 443) of the old scheme.
    let original = request_host(req);
    let host = r.host.clone().unwrap_or(original);
    let (name, port) = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), Some(p.to_string())),
        _ => (host.clone(), None),
    };
    let scheme = r
        .scheme
        .clone()
        .or_else(|| req.uri().scheme_str().map(str::to_string))
        .unwrap_or_else(|| "http".into());
    let port = match r.port {
        Some(p) => Some(p.to_string()),
        None if r.scheme.is_some() && matches!(port.as_deref(), Some("80" | "443")) => None,
        None => port,
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let (path, query) = split_query(pq);
    let new_path = match &r.path {
        PathRedirect::Keep => path.to_string(),
        PathRedirect::Path(p) => p.clone(),
        PathRedirect::Prefix(p) => {
            let matched = match &m.path {
                PathMatch::Prefix(x) | PathMatch::SeparatedPrefix(x) => x.len().min(path.len()),
                PathMatch::Exact(_) => path.len(),
                PathMatch::Regex(_) => 0,
            };
            format!("{p}{}", &path[matched..])
        }
        PathRedirect::Regex(re, sub) => re.replace_all(path, sub.as_str()).into_owned(),
    };
    // `path_redirect` may carry its own query; otherwise keep the request's.
    let query = if r.strip_query || new_path.contains('?') {
        None
    } else {
        query
    };
    let authority = match port {
        Some(p) => format!("{name}:{p}"),
        None => name,
    };
    join_query(format!("{scheme}://{authority}{new_path}"), query)
}

pub fn redirect_response<B>(r: &Redirect, m: &RouteMatch, req: &Request<B>) -> Response<Body> {
    let location = redirect_location(r, m, req);
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

pub fn direct_response(status: u16, body_bytes: &bytes::Bytes) -> Response<Body> {
    let mut resp = Response::new(body::full(body_bytes.clone()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if !body_bytes.is_empty() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    resp
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1) and those named in
/// `Connection`; `te: trailers` stays (gRPC needs it), as in Envoy.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s != "te")
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for h in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(h);
    }
    let keep_te = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    headers.remove(header::TE);
    if keep_te {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::table::PathMatch;

    fn redirect(
        host: Option<&str>,
        port: Option<u16>,
        scheme: Option<&str>,
        path: PathRedirect,
    ) -> Redirect {
        Redirect {
            scheme: scheme.map(str::to_string),
            host: host.map(str::to_string),
            port,
            path,
            status: 301,
            strip_query: false,
        }
    }

    #[test]
    fn redirect_locations_follow_envoy() {
        let m = RouteMatch {
            path: PathMatch::Prefix("/old".into()),
            case_sensitive: true,
            headers: vec![],
            query: vec![],
            source_ips: None,
        };
        let req = Request::builder()
            .uri("/old/x?q=1")
            .header("host", "reviews:80")
            .body(())
            .unwrap();
        let loc = |r: &Redirect| redirect_location(r, &m, &req);
        assert_eq!(
            loc(&redirect(None, None, None, PathRedirect::Keep)),
            "http://reviews:80/old/x?q=1"
        );
        assert_eq!(
            loc(&redirect(Some("ratings"), None, None, PathRedirect::Keep)),
            "http://ratings/old/x?q=1"
        );
        assert_eq!(
            loc(&redirect(
                None,
                Some(8080),
                None,
                PathRedirect::Prefix("/new".into())
            )),
            "http://reviews:8080/new/x?q=1"
        );
        assert_eq!(
            loc(&redirect(
                None,
                None,
                Some("https"),
                PathRedirect::Path("/p".into())
            )),
            "https://reviews/p?q=1"
        );
        let mut strip = redirect(None, None, None, PathRedirect::Keep);
        strip.strip_query = true;
        assert_eq!(loc(&strip), "http://reviews:80/old/x");
    }

    #[test]
    fn hop_by_hop_headers_go_te_trailers_stays() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("te", "trailers, deflate".parse().unwrap());
        h.insert("x-end-to-end", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key("connection") && !h.contains_key("keep-alive"));
        assert!(!h.contains_key("x-private"));
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-end-to-end"], "1");
    }
}
