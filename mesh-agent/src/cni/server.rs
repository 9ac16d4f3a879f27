//! The CNI API on the agent's Unix socket (docs/contracts/cni-api.md):
//! `POST /v1/cni/add`, `/v1/cni/del`, `/v1/cni/check`.
use std::{
    convert::Infallible,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use http_body_util::{BodyExt as _, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mesh_cni::api::{AddReply, DelRequest, PodRequest, ADD_PATH, CHECK_PATH, DEL_PATH};
use tokio::{net::UnixListener, sync::watch};

use super::{
    decide::{decide, Decision},
    records::PodRecord,
    Shared,
};
use crate::state::view::MeshView;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create the directory of the CNI socket {path}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove the stale CNI socket {path}")]
    Stale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on the CNI socket {path}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds `path` (a leftover socket file from an earlier run is removed
/// first), owner-only: whoever can talk to it can change capture.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Dir {
            path: dir.into(),
            source,
        })?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServerError::Stale {
                path: path.into(),
                source,
            })
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        path: path.into(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ServerError::Bind {
            path: path.into(),
            source,
        }
    })?;
    Ok(listener)
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

pub async fn serve(
    listener: UnixListener,
    core: Shared,
    view: watch::Receiver<Arc<MeshView>>,
    wait: Duration,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "CNI socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let core = Arc::clone(&core);
        let view = view.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let core = Arc::clone(&core);
                let view = view.clone();
                async move {
                    let method = req.method().clone();
                    let path = req.uri().path().to_string();
                    let body = match req.into_body().collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(error) => {
                            return Ok::<_, Infallible>(reply(
                                StatusCode::BAD_REQUEST,
                                format!("cannot read the request body: {error}"),
                            ))
                        }
                    };
                    Ok(route(&method, &path, &body, core, view, wait).await)
                }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "CNI connection ended");
            }
        });
    }
}

async fn route(
    method: &Method,
    path: &str,
    body: &[u8],
    core: Shared,
    view: watch::Receiver<Arc<MeshView>>,
    wait: Duration,
) -> Response<Body> {
    if method != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "POST only".into());
    }
    match path {
        ADD_PATH | CHECK_PATH => {
            let req: PodRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return reply(StatusCode::BAD_REQUEST, format!("{path}: {e}")),
            };
            if let Some(field) = [
                ("containerId", &req.container_id),
                ("netns", &req.netns),
                ("podNamespace", &req.pod_namespace),
                ("podName", &req.pod_name),
            ]
            .iter()
            .find(|(_, v)| v.is_empty())
            .map(|(f, _)| f)
            {
                return reply(
                    StatusCode::BAD_REQUEST,
                    format!("{path}: field {field} is empty"),
                );
            }
            let Some(decision) = wait_for_decision(view, &req, wait).await else {
                tracing::warn!(pod = %format!("{}/{}", req.pod_namespace, req.pod_name), ?wait, "no decision: pod unknown to the xDS view");
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "pod {}/{} is not in the agent's xDS view after {wait:?}: cannot decide its capture yet",
                        req.pod_namespace, req.pod_name
                    ),
                );
            };
            let add = path == ADD_PATH;
            blocking(core, move |core| {
                if add {
                    handle_add(core, &req, &decision)
                } else {
                    handle_check(core, &req, &decision)
                }
            })
            .await
        }
        DEL_PATH => {
            let req: DelRequest = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return reply(StatusCode::BAD_REQUEST, format!("{path}: {e}")),
            };
            blocking(core, move |core| handle_del(core, &req)).await
        }
        _ => reply(StatusCode::NOT_FOUND, format!("no route {path}")),
    }
}

/// Runs `f` on the core off the async runtime (it enters namespaces).
async fn blocking(
    core: Shared,
    f: impl FnOnce(&mut super::CniCore) -> Response<Body> + Send + 'static,
) -> Response<Body> {
    tokio::task::spawn_blocking(move || {
        let mut guard = core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    })
    .await
    .unwrap_or_else(|e| {
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("CNI handler panicked: {e}"),
        )
    })
}

/// The decision once the view knows the pod, waiting for view updates at
/// most `wait`.
async fn wait_for_decision(
    mut view: watch::Receiver<Arc<MeshView>>,
    req: &PodRequest,
    wait: Duration,
) -> Option<Decision> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = Arc::clone(&view.borrow_and_update());
        if let Some(d) = decide(&current, &req.pod_namespace, &req.pod_name) {
            return Some(d);
        }
        match tokio::time::timeout_at(deadline, view.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

fn handle_add(core: &mut super::CniCore, req: &PodRequest, d: &Decision) -> Response<Body> {
    let pod = format!("{}/{}", req.pod_namespace, req.pod_name);
    let netns = PathBuf::from(&req.netns);
    let cookie = match core.apply(&netns, d.enroll) {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%pod, %error, "CNI ADD: cannot change enrolment");
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("pod {pod}: {error}"),
            );
        }
    };
    let record = PodRecord {
        container_id: req.container_id.clone(),
        netns,
        netns_cookie: cookie,
        pod_namespace: req.pod_namespace.clone(),
        pod_name: req.pod_name.clone(),
        pod_uid: req.pod_uid.clone(),
        ips: req.ips.clone(),
        enrolled: d.enroll,
    };
    if let Err(error) = core.records.save(&record) {
        // Without a record a restart could not undo this enrolment: refuse,
        // and undo it now.
        let _ = core.enroller.unenroll_cookie(cookie);
        tracing::error!(%pod, %error, "CNI ADD: cannot write the pod record");
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("pod {pod}: {error}"),
        );
    }
    tracing::info!(%pod, container = %req.container_id, cookie, enrolled = d.enroll, reason = %d.reason, "CNI ADD");
    let body = AddReply {
        enrolled: d.enroll,
        reason: d.reason.clone(),
    };
    reply(
        StatusCode::OK,
        serde_json::to_string(&body).expect("plain struct serializes"),
    )
}

fn handle_check(core: &mut super::CniCore, req: &PodRequest, d: &Decision) -> Response<Body> {
    let pod = format!("{}/{}", req.pod_namespace, req.pod_name);
    let cookie = match crate::capture::netns::cookie_of(Path::new(&req.netns)) {
        Ok(c) => c,
        Err(error) => return reply(StatusCode::CONFLICT, format!("pod {pod}: {error}")),
    };
    let actual = core.is_enrolled(cookie);
    if actual == d.enroll {
        reply(StatusCode::OK, "{}".into())
    } else {
        let want = if d.enroll { "enrolled" } else { "not enrolled" };
        let is = if actual { "it is" } else { "it is not" };
        tracing::warn!(%pod, want, actual, "CNI CHECK mismatch");
        reply(
            StatusCode::CONFLICT,
            format!("pod {pod} should be {want} ({}) but {is}", d.reason),
        )
    }
}

fn handle_del(core: &mut super::CniCore, req: &DelRequest) -> Response<Body> {
    match core.records.get(&req.container_id) {
        Some(record) => core.forget(&record, "CNI DEL"),
        None => {
            // No record (e.g. ADD failed): still make sure the namespace is
            // not left enrolled.
            if let Some(netns) = &req.netns {
                if let Ok((cookie, true)) = core.enroller.unenroll(Path::new(netns)) {
                    tracing::info!(container = %req.container_id, cookie, "CNI DEL of an unrecorded sandbox: unenrolled");
                }
            }
            tracing::debug!(container = %req.container_id, "CNI DEL: no record");
        }
    }
    reply(StatusCode::OK, "{}".into())
}
