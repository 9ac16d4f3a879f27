//! The control plane's admin HTTP endpoint (`--admin-addr`, default
//! 127.0.0.1:15000, as Istio's) and its readiness endpoint
//! (`--ready-addr`, default 0.0.0.0:15021). Shapes are the contract in
//! docs/contracts/control-admin.md; `meshctl` is the main reader.
//!
//! - `GET /debug/syncz` — per connected proxy and type: SYNCED / NOT SENT /
//!   STALE / NACKED ([`syncz`])
//! - `GET /config_dump` — the mesh state, the xDS resources as served and
//!   the raw Istio documents ([`config_dump`], [`xds_json`])
//! - `GET /logging`, `POST /logging?level=<lvl>` or `?<module>=<lvl>` —
//!   the log filter, changed at runtime
//! - `POST /quitquitquit` — stop serving, let xDS streams end, exit 0
//! - `GET /healthz/ready` — 200 once the state is loaded and gRPC is
//!   served, 503 before and while stopping (on both addresses)
//! - `GET /graph` (with `/graph/graph.js`, `/graph/graph.css`) — the
//!   service graph page; `GET /graph/data?namespace=&window=` — its data
//!   (docs/contracts/graph-data.md, [`crate::graph`])
pub mod config_dump;
pub mod envoy_json;
pub mod syncz;
pub mod xds_json;

use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use crate::{
    app::logging::LogControl,
    graph::{self, DataQuery, GraphService},
    model::MeshState,
    serve::ConnectedProxies,
    source::RawResource,
    translate::workload::ConvertOptions,
};

/// How long open admin connections get to finish (e.g. the response to
/// `/quitquitquit`) after the endpoint stops accepting.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Everything the admin endpoints read or act on.
pub struct AdminState {
    pub proxies: Arc<ConnectedProxies>,
    /// The published mesh state.
    pub state: watch::Receiver<Arc<MeshState>>,
    /// The raw Istio documents of the last good load.
    pub raw: watch::Receiver<Arc<Vec<RawResource>>>,
    /// Problems of the last rejected load, if the last load failed.
    pub last_error: watch::Receiver<Option<String>>,
    /// How the served xDS resources are built from the state.
    pub convert: ConvertOptions,
    /// `None` when no global subscriber was installed (tests).
    pub log: Option<Arc<LogControl>>,
    /// True while the control plane serves (readiness).
    pub ready: watch::Receiver<bool>,
    /// Set by `/quitquitquit`; the app shuts down when it turns true.
    pub quit: watch::Sender<bool>,
    /// The service graph's data (`/graph/data`); `None`: not served.
    pub graph: Option<GraphService>,
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    /// Everything (`--admin-addr`).
    Admin,
    /// Only `/healthz/ready` (`--ready-addr`, reachable from outside).
    Ready,
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let text = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
    respond(status, "application/json", text + "\n")
}

fn text_response(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into() + "\n")
}

fn ready_response(state: &AdminState) -> Response<Body> {
    if *state.ready.borrow() {
        json_response(StatusCode::OK, &json!({"ready": true}))
    } else {
        json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"ready": false}))
    }
}

fn logging(state: &AdminState, method: &Method, query: Option<&str>) -> Response<Body> {
    let (status, body) = mesh_admin::logging::handle(state.log.as_deref(), method, query);
    text_response(status, body)
}

const ADMIN_ENDPOINTS: &[&str] = &[
    "GET /debug/syncz",
    "GET /config_dump",
    "GET /logging",
    "POST /logging?level=<lvl> | ?<module>=<lvl>",
    "POST /quitquitquit",
    "GET /healthz/ready",
    "GET /graph",
    "GET /graph/data?namespace=<ns>&window=<seconds>",
];

fn route(state: &AdminState, which: Endpoints, req: &Request<Incoming>) -> Response<Body> {
    let (method, path) = (req.method(), req.uri().path());
    let allowed: &[Method] = match (which, path) {
        (_, "/healthz/ready") => &[Method::GET],
        (Endpoints::Ready, _) => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"endpoints": ["GET /healthz/ready"]}),
            )
        }
        (_, "/debug/syncz" | "/config_dump") => &[Method::GET],
        (_, "/graph" | "/graph/" | "/graph/graph.js" | "/graph/graph.css" | "/graph/data") => {
            &[Method::GET]
        }
        (_, "/logging") => &[Method::GET, Method::POST],
        (_, "/quitquitquit") => &[Method::POST],
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({"endpoints": ADMIN_ENDPOINTS}),
            )
        }
    };
    if !allowed.contains(method) {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        return text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} takes {}", names.join(" or ")),
        );
    }
    match path {
        "/healthz/ready" => ready_response(state),
        "/debug/syncz" => json_response(StatusCode::OK, &syncz::syncz(&state.proxies)),
        "/config_dump" => json_response(StatusCode::OK, &config_dump::config_dump(state)),
        "/logging" => logging(state, method, req.uri().query()),
        "/graph" | "/graph/" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            graph::PAGE_HTML.to_string(),
        ),
        "/graph/graph.js" => respond(
            StatusCode::OK,
            "application/javascript; charset=utf-8",
            graph::PAGE_JS.to_string(),
        ),
        "/graph/graph.css" => respond(
            StatusCode::OK,
            "text/css; charset=utf-8",
            graph::PAGE_CSS.to_string(),
        ),
        "/graph/data" => unreachable!("served by graph_data"),
        "/quitquitquit" => {
            tracing::info!("/quitquitquit: shutting down");
            state.quit.send_replace(true);
            text_response(StatusCode::OK, "OK")
        }
        _ => unreachable!("paths are matched above"),
    }
}

/// `GET /graph/data`: the graph as JSON; a bad parameter is a 400 naming
/// it.
async fn graph_data(state: &AdminState, query: Option<&str>) -> Response<Body> {
    let query = match DataQuery::parse(query) {
        Ok(q) => q,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
    };
    let Some(graph) = &state.graph else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "the service graph is not served by this process"}),
        );
    };
    let data = graph.data(&query).await;
    match serde_json::to_value(&data) {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": format!("encoding the graph: {e}")}),
        ),
    }
}

/// Routes one request; `/graph/data` awaits its source, the rest answers
/// from memory.
async fn handle(state: &AdminState, which: Endpoints, req: &Request<Incoming>) -> Response<Body> {
    if which == Endpoints::Admin && req.uri().path() == "/graph/data" && req.method() == Method::GET
    {
        return graph_data(state, req.uri().query()).await;
    }
    route(state, which, req)
}

/// Serves `which` endpoints on `listener` until `shutdown` completes; open
/// connections then get [`CLOSE_GRACE`] to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    which: Endpoints,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, endpoints = ?which, "admin endpoint listening");
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(%error, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let state = state.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, which, &req).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "admin connection ended");
            }
        });
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_is_503() {
        let (_, state) = watch::channel(Arc::new(MeshState::default()));
        let (_, raw) = watch::channel(Arc::new(vec![]));
        let (_, last_error) = watch::channel(None);
        let (ready_tx, ready) = watch::channel(false);
        let admin = AdminState {
            proxies: Arc::new(ConnectedProxies::new()),
            state,
            raw,
            last_error,
            convert: ConvertOptions::default(),
            log: None,
            ready,
            quit: watch::channel(false).0,
            graph: None,
        };
        assert_eq!(
            ready_response(&admin).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready_tx.send_replace(true);
        assert_eq!(ready_response(&admin).status(), StatusCode::OK);
    }

    /// A raw HTTP/1.0 exchange with the admin listener: status line,
    /// content type, body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.lines().next().unwrap().to_string();
        let content_type = head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
            .unwrap_or_default()
            .to_string();
        (status, content_type, body.to_string())
    }

    #[tokio::test]
    async fn graph_page_assets_and_data() {
        let (_, state) = watch::channel(Arc::new(MeshState::default()));
        let admin = Arc::new(AdminState {
            proxies: Arc::new(ConnectedProxies::new()),
            state: state.clone(),
            raw: watch::channel(Arc::new(vec![])).1,
            last_error: watch::channel(None).1,
            convert: ConvertOptions::default(),
            log: None,
            ready: watch::channel(true).1,
            quit: watch::channel(false).0,
            graph: Some(GraphService {
                source: graph::Source::Scrape(Arc::new(graph::Scraper::new())),
                state,
            }),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            listener,
            admin,
            Endpoints::Admin,
            std::future::pending(),
        ));
        let (status, ct, body) = get(addr, "/graph").await;
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(ct, "text/html; charset=utf-8");
        assert_eq!(body, graph::PAGE_HTML);
        let (_, ct, body) = get(addr, "/graph/graph.js").await;
        assert_eq!(ct, "application/javascript; charset=utf-8");
        assert_eq!(body, graph::PAGE_JS);
        let (_, ct, _) = get(addr, "/graph/graph.css").await;
        assert_eq!(ct, "text/css; charset=utf-8");

        let (status, ct, body) = get(addr, "/graph/data?namespace=default&window=300").await;
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(ct, "application/json");
        let data: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(data["source"], "scrape");
        assert_eq!(data["window_seconds"], 300);
        assert_eq!(data["edges"], json!([]));

        let (status, _, body) = get(addr, "/graph/data?window=99999").await;
        assert!(status.contains(" 400 "), "{status}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("window"),
            "{error}"
        );
        server.abort();
    }
}
