//! One watch stream: newline-delimited JSON `{"type": ..., "object": ...}`
//! events written to a chunked response body until `timeoutSeconds`, a
//! [`close_watches`](super::FakeApiServer::close_watches), a 410, or the
//! client going away.
use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::channel::Sender;
use serde_json::{json, Value};

use super::{kinds::Kind, Shared};

/// A real apiserver picks 30–60 min when the client names no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// What the client asked for.
pub struct WatchRequest {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    /// `None` (absent or `0`): start with synthetic ADDED events for every
    /// current object.
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    /// `sendInitialEvents=true` (streaming lists): the synthetic ADDED
    /// events end with a BOOKMARK annotated `k8s.io/initial-events-end`.
    pub initial_events: bool,
}

fn bookmark(kind: &Kind, rv: u64, initial_end: bool) -> Value {
    let mut object = json!({
        "kind": kind.kind,
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
    });
    if initial_end {
        object["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    object
}

fn line(kind_of_event: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind_of_event, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// The `Status` of a 410 Gone, as an apiserver words it.
pub fn expired(rv: u64, compacted: u64) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {rv} ({compacted})"),
        "reason": "Expired", "code": 410
    })
}

/// Starts streaming `request` into `tx` on a task of its own. The starting
/// point is taken now, before the response goes out, so whatever a test
/// does once the client has the response (a write, a `bookmark()`, a
/// `close_watches()`) reaches this watch.
pub fn start(shared: Arc<Shared>, request: WatchRequest, tx: Sender<Bytes, Infallible>) {
    let changed = shared.changed.subscribe();
    let ns = request.namespace.as_deref();
    let start = {
        let state = shared.lock();
        let store = &state.store;
        let (last, first, gone) = match request.resource_version {
            None => {
                let added = store.list(request.kind, ns);
                let mut lines: Vec<Bytes> = added.iter().map(|o| line("ADDED", o)).collect();
                if request.initial_events {
                    lines.push(line("BOOKMARK", &bookmark(request.kind, store.rv, true)));
                }
                (store.rv, lines, false)
            }
            Some(rv) if rv < store.compacted => {
                let error = line("ERROR", &expired(rv, store.compacted));
                (rv, vec![error], true)
            }
            Some(rv) => (rv, vec![], false),
        };
        Start {
            closes: state.closes,
            compactions: store.compactions,
            bookmarks: state.bookmarks,
            last,
            first,
            gone,
        }
    };
    tokio::spawn(run(shared, request, tx, changed, start));
}

/// Where a watch starts, taken under the lock.
struct Start {
    closes: u64,
    compactions: u64,
    bookmarks: u64,
    last: u64,
    /// Sent before anything else (synthetic ADDED events, or the 410).
    first: Vec<Bytes>,
    /// The 410 is in `first`: end after it.
    gone: bool,
}

async fn run(
    shared: Arc<Shared>,
    request: WatchRequest,
    mut tx: Sender<Bytes, Infallible>,
    mut changed: tokio::sync::watch::Receiver<u64>,
    start: Start,
) {
    let timeout = request.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(BOOKMARK_EVERY);
    tick.tick().await; // the first tick is immediate
    let ns = request.namespace.as_deref();
    let Start {
        closes: start_closes,
        compactions: start_compactions,
        bookmarks: mut bookmarks_seen,
        mut last,
        first,
        gone,
    } = start;
    for l in first {
        if tx.send_data(l).await.is_err() {
            return;
        }
    }
    if gone {
        return;
    }
    let mut tick_fired = false;
    // Bounded by `deadline` (and by every exit below).
    loop {
        let (lines, done) = {
            let state = shared.lock();
            let store = &state.store;
            if state.closes != start_closes {
                return;
            }
            match store.changes_since(request.kind, ns, last) {
                None => (vec![line("ERROR", &expired(last, store.compacted))], true),
                Some(changes) => {
                    let mut lines: Vec<Bytes> = changes
                        .iter()
                        .map(|c| line(c.kind_of_change, &c.object))
                        .collect();
                    last = store.rv;
                    // A watch opened before a compaction sends no more
                    // bookmarks: it is about to get its 410, and a bookmark
                    // would let the client skip the relist.
                    let wanted = tick_fired || state.bookmarks != bookmarks_seen;
                    if request.bookmarks && wanted && store.compactions == start_compactions {
                        lines.push(line("BOOKMARK", &bookmark(request.kind, store.rv, false)));
                    }
                    bookmarks_seen = state.bookmarks;
                    (lines, false)
                }
            }
        };
        for l in lines {
            if tx.send_data(l).await.is_err() {
                return;
            }
        }
        if done {
            return;
        }
        tick_fired = false;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            r = changed.changed() => if r.is_err() { return },
            _ = tick.tick() => tick_fired = true,
        }
    }
}
