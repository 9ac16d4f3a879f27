//! `watch_kubernetes` startup against a tiny in-test HTTP/1.1 API server on
//! loopback (the full behaviour — relists, rejections, identical xDS — is
//! tested against the fake API server in tests/tests/kube_source/): the
//! first state waits for every kind's first list, and a kind that cannot
//! be listed fails startup naming it.
use std::{net::SocketAddr, time::Duration};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::*;
use crate::apiserver::kube_client;

/// Aborts the responder when the test ends, also on panic.
struct Responder {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lists every kind as one Namespace `default` (namespaces) or nothing,
/// except paths containing `forbidden`, answered 403; watches are held
/// open without events (the task is aborted at the end).
async fn responder(forbidden: &'static str) -> Responder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = vec![];
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            conns.push(tokio::spawn(serve(conn, forbidden)));
        }
    });
    Responder { addr, task }
}

async fn serve(mut conn: TcpStream, forbidden: &'static str) {
    for _ in 0..100 {
        let mut buf = Vec::new();
        loop {
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
        if path.contains("watch=true") {
            // Never answers: the watcher waits, as on a quiet cluster.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        let (code, body) = if path.contains(forbidden) {
            (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "code": 403, "reason": "Forbidden", "message": "forbidden by the test"}),
            )
        } else if path.starts_with("/api/v1/namespaces?") {
            (
                200,
                json!({"kind": "NamespaceList", "apiVersion": "v1",
                         "metadata": {"resourceVersion": "5"},
                         "items": [{"metadata": {"name": "default", "resourceVersion": "5",
                                                 "labels": {"istio.io/dataplane-mode": "ambient"}}}]}),
            )
        } else {
            (
                200,
                json!({"kind": "List", "apiVersion": "v1",
                         "metadata": {"resourceVersion": "5"}, "items": []}),
            )
        };
        let text = body.to_string();
        let response = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if conn.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn client(addr: SocketAddr, dir: &std::path::Path) -> Client {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n\
             current-context: t\n"
        ),
    )
    .unwrap();
    kube_client(Some(&path)).await.unwrap()
}

fn options() -> KubeSourceOptions {
    KubeSourceOptions {
        initial_list_timeout: Duration::from_secs(3),
        report: false,
        ..KubeSourceOptions::default()
    }
}

#[tokio::test]
async fn publishes_once_every_kind_listed() {
    let server = responder("nothing-is-forbidden").await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(server.addr, dir.path()).await;
    let watch = watch_kubernetes(client, SourceConfig::default(), options())
        .await
        .unwrap();
    assert!(watch.last_error.borrow().is_none());
    assert_eq!(watch.raw.borrow().len(), 0);
    watch.stop();
}

#[tokio::test]
async fn a_kind_that_cannot_be_listed_fails_startup_naming_it() {
    let server = responder("endpointslices").await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(server.addr, dir.path()).await;
    let error = match watch_kubernetes(client, SourceConfig::default(), options()).await {
        Ok(_) => panic!("started without endpointslices"),
        Err(error) => error,
    };
    match &error {
        KubeSourceError::NotListed {
            kinds, last_error, ..
        } => {
            assert_eq!(kinds, &["endpointslices.discovery.k8s.io"]);
            let last = last_error.as_deref().unwrap_or_default();
            assert!(last.contains("forbidden by the test"), "{last}");
        }
        other => panic!("{other}"),
    }
    assert!(
        error
            .to_string()
            .contains("endpointslices.discovery.k8s.io"),
        "{error}"
    );
}

fn source_loop(reporter: mpsc::UnboundedSender<Report>) -> SourceLoop {
    let kinds = resources::watched_kinds();
    SourceLoop::new(kinds, SourceConfig::default(), options(), Some(reporter)).0
}

fn virtual_service(rv: &str, regex: &str) -> (Key, store::Stored) {
    let key = Key {
        group: "networking.istio.io".into(),
        kind: "VirtualService".into(),
        namespace: "default".into(),
        name: "reviews".into(),
    };
    let stored = store::Stored {
        resource_version: rv.into(),
        generation: Some(1),
        api_version: "networking.istio.io/v1".into(),
        value: json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": rv},
            "spec": {"hosts": ["reviews"], "http": [{"match": [{"uri": {"regex": regex}}]}]}}),
    };
    (key, stored)
}

fn problem() -> crate::source::Problem {
    crate::source::Problem {
        file: "kubernetes".into(),
        resource: "VirtualService default/reviews".into(),
        field: "spec.http[0].match[0].uri.regex".into(),
        message: "does not compile".into(),
    }
}

/// Which reports came out: `rejected` / `accepted`.
fn drain(rx: &mut mpsc::UnboundedReceiver<Report>) -> Vec<&'static str> {
    let mut out = vec![];
    while let Ok(report) = rx.try_recv() {
        out.push(match report {
            Report::Rejected { message, .. } => {
                assert!(
                    message.contains("spec.http[0].match[0].uri.regex"),
                    "{message}"
                );
                "rejected"
            }
            Report::Accepted { .. } => "accepted",
            Report::GatewayApi { .. } => "gateway-api",
        });
    }
    out
}

#[test]
fn rejections_are_reported_once_per_content_and_acceptance_after_them() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut source = source_loop(tx);
    let (key, bad) = virtual_service("10", "(unclosed");
    let objects = BTreeMap::from([(key.clone(), bad.clone())]);
    let rejected = BTreeMap::from([(key.clone(), vec![problem()])]);
    let nothing = BTreeMap::new();
    source.report(&objects, &rejected, &nothing);
    assert_eq!(drain(&mut rx), ["rejected"]);

    // Our own status patch bumps the resourceVersion: not a new version.
    let mut patched = bad.clone();
    patched.resource_version = "11".into();
    patched.value["metadata"]["resourceVersion"] = json!("11");
    let objects = BTreeMap::from([(key.clone(), patched)]);
    source.report(&objects, &rejected, &nothing);
    assert_eq!(drain(&mut rx), Vec::<&str>::new());

    // Fixed: Accepted=True once.
    let (_, good) = virtual_service("12", "^/v1");
    let objects = BTreeMap::from([(key.clone(), good.clone())]);
    source.report(&objects, &BTreeMap::new(), &objects);
    assert_eq!(drain(&mut rx), ["accepted"]);
    source.report(&objects, &BTreeMap::new(), &objects);
    assert_eq!(drain(&mut rx), Vec::<&str>::new());

    // Broken again with the very same content: reported again.
    let objects = BTreeMap::from([(key.clone(), bad)]);
    source.report(&objects, &rejected, &BTreeMap::from([(key, good)]));
    assert_eq!(drain(&mut rx), ["rejected"]);
}

#[test]
fn kinds_without_status_are_reported_again_after_a_good_version() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut source = source_loop(tx);
    let (mut key, mut bad) = virtual_service("10", "(unclosed");
    // The same shape as a core kind: no status to write, events only.
    key.group = String::new();
    key.kind = "Service".into();
    bad.value["kind"] = json!("Service");
    let objects = BTreeMap::from([(key.clone(), bad.clone())]);
    let rejected = BTreeMap::from([(key.clone(), vec![problem()])]);
    source.report(&objects, &rejected, &BTreeMap::new());
    assert_eq!(drain(&mut rx), ["rejected"]);
    let (_, mut good) = virtual_service("12", "^/v1");
    good.value["kind"] = json!("Service");
    let fixed = BTreeMap::from([(key.clone(), good)]);
    source.report(&fixed, &BTreeMap::new(), &fixed);
    assert_eq!(drain(&mut rx), Vec::<&str>::new(), "no status to set");
    source.report(&objects, &rejected, &fixed);
    assert_eq!(drain(&mut rx), ["rejected"]);
}

/// A pod as a list returns it (no apiVersion/kind).
fn listed_pod(i: usize, rv: &str) -> kube::api::DynamicObject {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i}"), "namespace": "default", "resourceVersion": rv},
        "spec": {"serviceAccountName": "p"},
        "status": {"podIP": format!("10.1.{}.{}", i / 250, i % 250 + 1)},
    }))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_list_or_relist_of_a_thousand_objects_is_one_rebuild() {
    use kube::runtime::watcher::Event;
    let (tx, _reports) = mpsc::unbounded_channel();
    let source = source_loop(tx);
    let mut progress = source.progress_tx.subscribe();
    let mut state = source.state_tx.subscribe();
    let kinds = source.kinds.len();
    let (updates, rx) = mpsc::channel(4096);
    let task = tokio::spawn(source.run(rx));
    let send = |kind: usize, event: Event<kube::api::DynamicObject>| {
        updates
            .try_send(watcher::Update::Event {
                kind,
                event: Box::new(event),
            })
            .unwrap()
    };
    // The initial lists, pods (kind 1) with a thousand objects. The clock
    // is paused: it only moves when every task waits, so the burst is
    // delivered well inside the debounce window.
    for kind in 0..kinds {
        send(kind, Event::Init);
        if kind == 1 {
            for i in 0..1000 {
                send(kind, Event::InitApply(listed_pod(i, "1")));
            }
        }
        send(kind, Event::InitDone);
    }
    tokio::time::timeout(Duration::from_secs(60), progress.wait_for(|p| p.published))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.borrow_and_update().workloads.len(), 1000);
    assert_eq!(progress.borrow().rebuilds, 1);

    // A relist after 410: a thousand again, one gone, one new.
    send(1, Event::Init);
    for i in 1..1001 {
        send(1, Event::InitApply(listed_pod(i, "2")));
    }
    send(1, Event::InitDone);
    tokio::time::timeout(Duration::from_secs(60), state.changed())
        .await
        .unwrap()
        .unwrap();
    // Well past the debounce: nothing more comes of the burst.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(progress.borrow().rebuilds, 2);
    let state = state.borrow().clone();
    assert!(state
        .workloads
        .contains_key("Kubernetes//Pod/default/p-1000"));
    assert!(!state.workloads.contains_key("Kubernetes//Pod/default/p-0"));
    task.abort();
}
