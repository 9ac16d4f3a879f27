//! A small fake Kubernetes API server, **test support only** (never part
//! of the product): no real apiserver can be installed on this machine
//! kind, so the Kubernetes source of `mesh-control` is tested against this.
//!
//! It speaks real HTTP/1.1 on 127.0.0.1:0 with bearer-token auth and
//! serves, for the kinds mesh-control watches (docs/kubernetes.md; see
//! [`kinds`]): lists (cluster-wide and namespaced, `<Kind>List` with
//! `metadata.resourceVersion`), gets, watches (`resourceVersion`,
//! `allowWatchBookmarks`, `timeoutSeconds`, `sendInitialEvents` (streaming
//! lists); newline-delimited JSON events
//! streamed chunked), 410 Gone for resourceVersions older than the last
//! [`FakeApiServer::compact`] (an `ERROR` event with a `Status` on a watch,
//! HTTP 410 on a list with an explicit old resourceVersion), TokenReview,
//! `v1` Event creation and merge-patches of `/status`. That is what kube
//! 5's client and `kube::runtime::watcher` send (list with
//! `resourceVersion=0&resourceVersionMatch=NotOlderThan&limit=500`, which
//! a real apiserver serves from its cache unpaged, then a watch from the
//! list's resourceVersion).
//!
//! Not served: discovery (`/api`, `/apis`), creates/updates other than
//! the above, label/field selectors (refused with 400 rather than answered
//! unfiltered); `limit` is ignored (lists are never paged).
//!
//! Objects are loaded from the same YAML the directory source reads
//! ([`FakeApiServer::load_yaml`]); kinds it does not serve are skipped.
mod http;
pub mod kinds;
mod store;
mod watch;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde_json::Value;

use store::Store;

/// What the fake refuses, naming the object and field.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("invalid YAML in document {index}: {error}")]
    Yaml {
        index: usize,
        error: serde_yaml::Error,
    },
    #[error("document {index} cannot be JSON: {error}")]
    Json {
        index: usize,
        error: serde_json::Error,
    },
    #[error("{kind}: missing or empty {field}")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    #[error("kind {kind} of {api_version:?} is not served by the fake")]
    UnknownKind { api_version: String, kind: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("cannot listen on 127.0.0.1:0 or write the kubeconfig: {0}")]
    Io(#[from] std::io::Error),
}

/// One merge-patch of a `/status` subresource, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPatch {
    /// `VirtualService`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub patch: Value,
}

/// A token [`FakeApiServer::add_token`] made known to TokenReview.
#[derive(Debug, Clone)]
struct TokenUser {
    username: String,
    extra: BTreeMap<String, Vec<String>>,
}

/// Everything the HTTP side and the test side share, under one lock.
#[derive(Debug, Default)]
struct State {
    store: Store,
    /// Bumped by [`FakeApiServer::close_watches`]: open watches end.
    closes: u64,
    /// Bumped by [`FakeApiServer::bookmark`]: open watches send a bookmark.
    bookmarks: u64,
    tokens: BTreeMap<String, TokenUser>,
    events: Vec<Value>,
    statuses: Vec<StatusPatch>,
    requests: BTreeMap<String, usize>,
}

struct Shared {
    state: Mutex<State>,
    /// Ticked on every change of `state` that open watches must see.
    changed: tokio::sync::watch::Sender<u64>,
    admin_token: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not hide the fake's state from the
        // next assertion.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The running fake; stops serving (and ends every watch) on drop.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl FakeApiServer {
    /// The bearer token every request must carry (written into
    /// [`FakeApiServer::kubeconfig`]).
    pub const ADMIN_TOKEN: &'static str = "fake-admin-token";

    /// Listens on 127.0.0.1:0; needs a tokio runtime.
    pub async fn start() -> Result<Self, FakeError> {
        Self::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
    }

    /// Listens on `ip:0` inside the network namespace at `netns` (a test
    /// cluster's underlay, where its mesh-control runs); needs a tokio
    /// runtime. The socket keeps its namespace, so the fake is served from
    /// this process's runtime all the same.
    pub async fn start_in(
        netns: &std::path::Path,
        ip: std::net::IpAddr,
    ) -> Result<Self, FakeError> {
        let file = std::fs::File::open(netns)?;
        let listener = std::thread::scope(|s| {
            s.spawn(move || -> std::io::Result<std::net::TcpListener> {
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let listener = std::net::TcpListener::bind((ip, 0))?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .join()
            .expect("netns bind thread panicked")
        })?;
        Self::serve(tokio::net::TcpListener::from_std(listener)?)
    }

    fn serve(listener: tokio::net::TcpListener) -> Result<Self, FakeError> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: tokio::sync::watch::channel(0).0,
            admin_token: Self::ADMIN_TOKEN.to_string(),
        });
        let accept = tokio::spawn(http::serve(listener, shared.clone()));
        Ok(Self {
            shared,
            addr,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies every document of `text` (multi-document YAML; `kind: List`
    /// expanded; empty documents skipped), as the directory source reads
    /// them. Kinds the fake does not serve are skipped. Returns how many
    /// objects were applied.
    pub fn load_yaml(&self, text: &str) -> Result<usize, FakeError> {
        use serde::Deserialize as _;
        let mut objects = vec![];
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let index = i + 1;
            let value = serde_yaml::Value::deserialize(doc)
                .map_err(|error| FakeError::Yaml { index, error })?;
            if value.is_null() {
                continue;
            }
            let value: Value =
                serde_json::to_value(value).map_err(|error| FakeError::Json { index, error })?;
            if value["kind"] == "List" && value["apiVersion"] == "v1" {
                objects.extend(value["items"].as_array().cloned().unwrap_or_default());
            } else {
                objects.push(value);
            }
        }
        let mut applied = 0;
        for object in objects {
            match self.apply(object) {
                Ok(_) => applied += 1,
                Err(FakeError::UnknownKind { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(applied)
    }

    /// Creates or replaces one object (any served version of its group);
    /// returns its new resourceVersion. Watches see ADDED or MODIFIED.
    pub fn apply(&self, object: Value) -> Result<u64, FakeError> {
        let rv = self.shared.lock().store.apply(object)?;
        self.shared.notify();
        Ok(rv)
    }

    /// Deletes one object. `kind` is the kind's name (`Pod`), qualified by
    /// its group where ambiguous (`Gateway.networking.istio.io`); `namespace`
    /// is ignored for cluster-scoped kinds.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> Result<u64, FakeError> {
        let rv = self.shared.lock().store.delete(kind, namespace, name)?;
        self.shared.notify();
        Ok(rv)
    }

    /// Expires every resourceVersion handed out so far (etcd compaction):
    /// open watches get a 410 `ERROR` event and end, a watch or an explicit
    /// list from an old resourceVersion gets 410, a fresh list works.
    pub fn compact(&self) {
        self.shared.lock().store.compact();
        self.shared.notify();
    }

    /// Ends every open watch stream (a dropped connection); clients re-watch
    /// from their last resourceVersion.
    pub fn close_watches(&self) {
        self.shared.lock().closes += 1;
        self.shared.notify();
    }

    /// Makes every open watch that allowed bookmarks send one now (besides
    /// the one sent every second).
    pub fn bookmark(&self) {
        self.shared.lock().bookmarks += 1;
        self.shared.notify();
    }

    /// Makes TokenReview authenticate `token` as `username`
    /// (`system:serviceaccount:<ns>:<sa>`) with `extra` (e.g.
    /// `authentication.kubernetes.io/node-name`). Unknown tokens are not
    /// authenticated.
    pub fn add_token(&self, token: &str, username: &str, extra: &[(&str, &str)]) {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in extra {
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
        self.shared.lock().tokens.insert(
            token.to_string(),
            TokenUser {
                username: username.to_string(),
                extra: map,
            },
        );
    }

    /// Every Event POSTed (`v1` or `events.k8s.io/v1`), in order.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// Every `/status` merge-patch received, in order.
    pub fn statuses(&self) -> Vec<StatusPatch> {
        self.shared.lock().statuses.clone()
    }

    /// The stored object, as a GET would return it.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let kind = kinds::by_name(kind)?;
        let namespace = if kind.namespaced { namespace } else { "" };
        self.shared.lock().store.get(kind, namespace, name).cloned()
    }

    /// Requests served, per `"<VERB> <path>"` where VERB is `LIST`,
    /// `WATCH`, `GET`, `POST` or `PATCH` and path has no query, e.g.
    /// `"LIST /api/v1/pods"`.
    pub fn requests(&self) -> BTreeMap<String, usize> {
        self.shared.lock().requests.clone()
    }

    /// Writes `dir/kubeconfig` pointing at this server with the admin token;
    /// returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> Result<PathBuf, FakeError> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: admin\ncurrent-context: fake\n",
            self.url(),
            Self::ADMIN_TOKEN
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its connection set (aborting every
        // connection); watch tasks end on the close.
        self.accept.abort();
        self.close_watches();
    }
}
