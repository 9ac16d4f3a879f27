//! The fake's HTTP/1.1 side: bearer-token check, routing of `/api/v1/...`
//! and `/apis/<group>/<version>/...`, and the answers (lists, gets,
//! watches, TokenReview, Events, `/status` merge patches, 404/405/410
//! `Status` bodies).
use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{
    kinds::{self, Kind},
    watch::{self, WatchRequest},
    Shared, StatusPatch,
};

type Body = BoxBody<Bytes, Infallible>;

/// Accepts connections until the task is aborted (dropping the set aborts
/// every connection, including streaming watches).
pub(super) async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors and the like: do not spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("static response parts")
}

/// A `Status` failure body, as an apiserver sends with 4xx answers.
fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    respond(code, &body)
}

/// Where a path points, after `/api/v1` or `/apis/<group>/<version>`.
struct Target {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let owned = |s: Option<&&str>| s.map(|s| s.to_string());
    if let ["namespaces", ns, plural, more @ ..] = rest {
        if let Some(kind) = kinds::by_plural(group, version, plural).filter(|k| k.namespaced) {
            return Some(Target {
                kind,
                namespace: Some(ns.to_string()),
                name: owned(more.first()),
                subresource: owned(more.get(1)),
            });
        }
    }
    let kind = kinds::by_plural(group, version, rest.first()?)?;
    Some(Target {
        kind,
        namespace: None,
        name: owned(rest.get(1)),
        subresource: owned(rest.get(2)),
    })
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| v.to_string())
    })
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.admin_token));
    if !authorized {
        return Ok(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        ));
    }
    let watch = query(&req, "watch").is_some_and(|v| v == "true" || v == "1");
    // Selectors are not implemented: refuse rather than answer unfiltered.
    for selector in ["labelSelector", "fieldSelector"] {
        if query(&req, selector).is_some_and(|v| !v.is_empty()) {
            return Ok(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("{selector} is not supported by the fake API server"),
            ));
        }
    }
    let verb = match *req.method() {
        Method::GET if watch => "WATCH",
        Method::GET => "GET",
        ref m => m.as_str(),
    };
    let target = route(&path);
    let is_collection = target.as_ref().is_some_and(|t| t.name.is_none());
    let counted = if verb == "GET" && is_collection {
        "LIST"
    } else {
        verb
    };
    *shared
        .lock()
        .requests
        .entry(format!("{counted} {path}"))
        .or_default() += 1;
    if req.method() == Method::POST && path == "/apis/authentication.k8s.io/v1/tokenreviews" {
        return Ok(token_review(&shared, read_json(req).await));
    }
    let Some(target) = target else {
        return Ok(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        ));
    };
    let response = match (req.method().clone(), &target.name, &target.subresource) {
        (Method::GET, None, _) if watch => start_watch(&shared, &req, target),
        (Method::GET, None, _) => list(&shared, &req, &target),
        (Method::GET, Some(name), None) => get(&shared, &target, name),
        (Method::POST, None, _) if target.kind.kind == "Event" => {
            create_event(&shared, &target, read_json(req).await)
        }
        (Method::PATCH, Some(name), Some(sub)) if sub == "status" => {
            let name = name.clone();
            patch_status(&shared, &target, &name, read_json(req).await)
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{} {path} is not supported by the fake", req.method()),
        ),
    };
    Ok(response)
}

async fn read_json(req: Request<Incoming>) -> Value {
    match req.into_body().collect().await {
        Ok(body) => serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn list(shared: &Shared, req: &Request<Incoming>, target: &Target) -> Response<Body> {
    let state = shared.lock();
    let store = &state.store;
    let rv = query(req, "resourceVersion").and_then(|v| v.parse::<u64>().ok());
    let not_older = query(req, "resourceVersionMatch").is_some_and(|m| m == "NotOlderThan");
    // `0` means "any"; NotOlderThan is served from the (newer) cache.
    if let Some(rv) = rv.filter(|rv| *rv != 0 && *rv < store.compacted && !not_older) {
        let body = watch::expired(rv, store.compacted);
        return respond(StatusCode::GONE, &body);
    }
    let items: Vec<Value> = store
        .list(target.kind, target.namespace.as_deref())
        .into_iter()
        .map(|mut item| {
            if target.kind.builtin {
                if let Some(map) = item.as_object_mut() {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
            }
            item
        })
        .collect();
    let body = json!({
        "apiVersion": target.kind.api_version(),
        "kind": format!("{}List", target.kind.kind),
        "metadata": {"resourceVersion": store.rv.to_string()},
        "items": items,
    });
    respond(StatusCode::OK, &body)
}

fn get(shared: &Shared, target: &Target, name: &str) -> Response<Body> {
    let ns = target.namespace.as_deref().unwrap_or("");
    match shared.lock().store.get(target.kind, ns, name) {
        Some(object) => respond(StatusCode::OK, object),
        None => not_found(target, name),
    }
}

fn not_found(target: &Target, name: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} {name:?} not found", target.kind.plural),
    )
}

fn start_watch(shared: &Arc<Shared>, req: &Request<Incoming>, target: Target) -> Response<Body> {
    let request = WatchRequest {
        kind: target.kind,
        namespace: target.namespace,
        resource_version: query(req, "resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|rv| *rv != 0),
        bookmarks: query(req, "allowWatchBookmarks").is_some_and(|v| v == "true"),
        initial_events: query(req, "sendInitialEvents").is_some_and(|v| v == "true"),
        timeout: query(req, "timeoutSeconds")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs),
    };
    let (tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(16);
    watch::start(shared.clone(), request, tx);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(body.boxed())
        .expect("static response parts")
}

fn token_review(shared: &Shared, review: Value) -> Response<Body> {
    let token = review.pointer("/spec/token").and_then(Value::as_str);
    let audiences = review
        .pointer("/spec/audiences")
        .cloned()
        .unwrap_or(json!([]));
    let user = token.and_then(|t| shared.lock().tokens.get(t).cloned());
    let status = match user {
        Some(user) => {
            let mut groups = vec!["system:authenticated".to_string()];
            if let Some(ns) = user
                .username
                .strip_prefix("system:serviceaccount:")
                .and_then(|rest| rest.split(':').next())
            {
                groups.push("system:serviceaccounts".into());
                groups.push(format!("system:serviceaccounts:{ns}"));
            }
            json!({"authenticated": true, "audiences": audiences, "user": {
                "username": user.username, "uid": "fake-uid", "groups": groups, "extra": user.extra}})
        }
        None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
    };
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": review.get("spec").cloned().unwrap_or(json!({})),
        "status": status,
    });
    respond(StatusCode::CREATED, &body)
}

fn create_event(shared: &Shared, target: &Target, mut event: Value) -> Response<Body> {
    if !event.is_object() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Event body is not a JSON object".into(),
        );
    }
    let mut state = shared.lock();
    let n = state.events.len() + 1;
    let meta = &mut event["metadata"];
    if meta.get("name").and_then(Value::as_str).is_none() {
        let prefix = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("event.");
        meta["name"] = json!(format!("{prefix}{n:05}"));
    }
    if let Some(ns) = &target.namespace {
        meta["namespace"] = json!(ns);
    }
    state.events.push(event.clone());
    respond(StatusCode::CREATED, &event)
}

fn patch_status(shared: &Shared, target: &Target, name: &str, patch: Value) -> Response<Body> {
    let ns = target.namespace.clone().unwrap_or_default();
    let result = {
        let mut state = shared.lock();
        state.statuses.push(StatusPatch {
            kind: target.kind.kind.to_string(),
            namespace: ns.clone(),
            name: name.to_string(),
            patch: patch.clone(),
        });
        state.store.patch_status(target.kind, &ns, name, &patch)
    };
    match result {
        Ok(object) => {
            shared.notify();
            respond(StatusCode::OK, &object)
        }
        Err(_) => not_found(target, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let t = route("/api/v1/namespaces/default/pods/a/status").unwrap();
        assert_eq!(
            (t.kind.kind, t.namespace.as_deref(), t.name.as_deref()),
            ("Pod", Some("default"), Some("a"))
        );
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = route("/api/v1/namespaces/default").unwrap();
        assert_eq!(
            (t.kind.kind, t.name.as_deref()),
            ("Namespace", Some("default"))
        );
        let t = route("/apis/networking.istio.io/v1/gateways").unwrap();
        assert_eq!(
            (t.kind.group, t.namespace.as_deref()),
            ("networking.istio.io", None)
        );
        assert!(route("/apis/apps/v1/deployments").is_none());
        assert!(route("/version").is_none());
    }
}
