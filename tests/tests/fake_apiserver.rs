//! The fake Kubernetes API server (tests/src/fake_apiserver) against the
//! real kube 5 client and `kube::runtime::watcher`: what mesh-control's
//! Kubernetes source will send must be answered as an apiserver would.
use std::{future::Future, time::Duration};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    core::v1::{Event, Pod},
};
use kube::{
    api::{
        ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
        VersionMatch, WatchEvent, WatchParams,
    },
    runtime::watcher,
    Api, Client,
};
use mesh_e2e::fake_apiserver::FakeApiServer;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

const YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: shop}
  spec: {nodeName: node-1, containers: [{name: c, image: i}]}
  status: {podIP: 10.244.1.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: b}
  spec: {nodeName: node-2, containers: [{name: c, image: i}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: skipped}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: r, namespace: shop}
spec: {hosts: [r]}
"#;

async fn client(fake: &FakeApiServer, dir: &std::path::Path) -> Client {
    let path = fake.kubeconfig(dir).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

fn pods_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Pod"), "pods")
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>>
              + Unpin),
) -> Result<watcher::Event<DynamicObject>, watcher::Error> {
    bounded("watcher event", stream.next())
        .await
        .expect("watcher stream ended")
}

fn describe(event: &Result<watcher::Event<DynamicObject>, watcher::Error>) -> String {
    match event {
        Ok(watcher::Event::Init) => "Init".into(),
        Ok(watcher::Event::InitDone) => "InitDone".into(),
        Ok(watcher::Event::InitApply(o)) => {
            format!("InitApply {}", o.metadata.name.clone().unwrap())
        }
        Ok(watcher::Event::Apply(o)) => format!("Apply {}", o.metadata.name.clone().unwrap()),
        Ok(watcher::Event::Delete(o)) => format!("Delete {}", o.metadata.name.clone().unwrap()),
        Err(e) => format!("Err {e}"),
    }
}

async fn events(
    stream: &mut (impl futures::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>>
              + Unpin),
    n: usize,
) -> Vec<String> {
    let mut out = vec![];
    for _ in 0..n {
        out.push(describe(&next_event(stream).await));
    }
    out
}

#[tokio::test]
async fn watcher_lists_watches_and_relists_after_410() {
    let fake = FakeApiServer::start().await.unwrap();
    assert_eq!(fake.load_yaml(YAML).unwrap(), 4, "Deployment skipped");
    let dir = tempfile::tempdir().unwrap();
    let client = client(&fake, dir.path()).await;
    let api: Api<DynamicObject> = Api::all_with(client, &pods_resource());
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    // Listed by namespace, then name.
    assert_eq!(
        events(&mut stream, 4).await,
        ["Init", "InitApply b", "InitApply a", "InitDone"]
    );
    // The default namespace was filled in; the watch sees a new pod.
    let b = fake.get("Pod", "default", "b").unwrap();
    assert_eq!(b["metadata"]["namespace"], "default");
    fake.apply(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c", "namespace": "shop"}}),
    )
    .unwrap();
    assert_eq!(events(&mut stream, 1).await, ["Apply c"]);
    fake.delete("Pod", "shop", "c").unwrap();
    assert_eq!(events(&mut stream, 1).await, ["Delete c"]);
    let lists = |fake: &FakeApiServer| fake.requests().get("LIST /api/v1/pods").copied();
    assert_eq!(lists(&fake), Some(1));
    // A dropped watch is resumed from the last resourceVersion: no relist.
    fake.close_watches();
    fake.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "d"}}))
        .unwrap();
    assert_eq!(events(&mut stream, 1).await, ["Apply d"]);
    assert_eq!(lists(&fake), Some(1));
    assert!(fake.requests()["WATCH /api/v1/pods"] >= 2);
    // Compaction: the open watch gets 410 Gone, the watcher relists.
    fake.compact();
    let seen = events(&mut stream, 6).await;
    assert!(
        seen[0].starts_with("Err") && seen[0].contains("Expired"),
        "{seen:?}"
    );
    assert_eq!(
        seen[1..],
        [
            "Init",
            "InitApply b",
            "InitApply d",
            "InitApply a",
            "InitDone"
        ]
    );
    assert_eq!(lists(&fake), Some(2));
}

#[tokio::test]
async fn watcher_with_streaming_lists() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.load_yaml(YAML).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&fake, dir.path()).await;
    let api: Api<DynamicObject> = Api::all_with(client, &pods_resource());
    let config = watcher::Config::default().streaming_lists();
    let mut stream = watcher(api, config).boxed();
    assert_eq!(
        events(&mut stream, 4).await,
        ["Init", "InitApply b", "InitApply a", "InitDone"]
    );
    fake.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}}))
        .unwrap();
    assert_eq!(events(&mut stream, 1).await, ["Apply c"]);
    assert_eq!(fake.requests().get("LIST /api/v1/pods"), None, "no list");
}

#[tokio::test]
async fn raw_watch_bookmarks_410_and_typed_lists() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.load_yaml(YAML).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = client(&fake, dir.path()).await;
    // Typed list: built-in list items carry no apiVersion/kind, k8s-openapi
    // copes; namespaced list.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let list = bounded("list", pods.list(&ListParams::default()))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let rv = list.metadata.resource_version.clone().unwrap();
    // Watch from the list: a bookmark on demand carries the current version.
    let wp = WatchParams::default().timeout(5);
    let mut watch = bounded("watch", pods.watch(&wp, &rv))
        .await
        .unwrap()
        .boxed();
    fake.bookmark();
    let event = bounded("bookmark", watch.try_next())
        .await
        .unwrap()
        .unwrap();
    let WatchEvent::Bookmark(bookmark) = event else {
        panic!("expected a bookmark, got {event:?}");
    };
    assert_eq!(bookmark.metadata.resource_version, rv);
    // timeoutSeconds: the stream ends on its own (bounded by LIMIT).
    let rest: Vec<_> = bounded("watch timeout", watch.collect::<Vec<_>>()).await;
    assert!(
        rest.iter()
            .all(|e| matches!(e, Ok(WatchEvent::Bookmark(_)))),
        "{rest:?}"
    );
    // Too old: a watch gets an ERROR event, an exact list HTTP 410.
    fake.compact();
    let mut watch = bounded("watch", pods.watch(&wp, &rv))
        .await
        .unwrap()
        .boxed();
    match bounded("410", watch.try_next()).await.unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let exact = ListParams::default().at(&rv).matching(VersionMatch::Exact);
    let error = bounded("list", pods.list(&exact)).await.unwrap_err();
    assert!(
        error.to_string().contains("410") || format!("{error:?}").contains("410"),
        "{error:?}"
    );
    // Selectors are refused, not ignored.
    let error = bounded(
        "selector",
        pods.list(&ListParams::default().labels("app=a")),
    )
    .await
    .unwrap_err();
    assert!(format!("{error:?}").contains("400"), "{error:?}");
    // Not found is a Status 404.
    let error = bounded("get", pods.get("nope")).await.unwrap_err();
    assert!(format!("{error:?}").contains("404"), "{error:?}");
}

#[tokio::test]
async fn token_review_events_and_status_patches() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.load_yaml(YAML).unwrap();
    fake.add_token(
        "tok-a",
        "system:serviceaccount:istio-system:mesh-agent",
        &[("authentication.kubernetes.io/node-name", "node-1")],
    );
    let dir = tempfile::tempdir().unwrap();
    let client = client(&fake, dir.path()).await;
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = |token: &str| TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences: Some(vec!["istio-ca".into()]),
        },
        ..Default::default()
    };
    let pp = PostParams::default();
    let ok = bounded("review", reviews.create(&pp, &review("tok-a")))
        .await
        .unwrap();
    let status = ok.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    let user = status.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:istio-system:mesh-agent")
    );
    assert_eq!(
        user.extra.unwrap()["authentication.kubernetes.io/node-name"],
        ["node-1"]
    );
    let bad = bounded("review", reviews.create(&pp, &review("nope")))
        .await
        .unwrap();
    assert_ne!(bad.status.unwrap().authenticated, Some(true));

    let events: Api<Event> = Api::namespaced(client.clone(), "shop");
    let event: Event = serde_json::from_value(json!({
        "metadata": {"generateName": "r."},
        "involvedObject": {"kind": "VirtualService", "namespace": "shop", "name": "r"},
        "type": "Warning", "reason": "Rejected", "message": "spec.http[0]: bad"
    }))
    .unwrap();
    bounded("event", events.create(&pp, &event)).await.unwrap();
    assert_eq!(fake.events().len(), 1);
    assert_eq!(fake.events()[0]["reason"], "Rejected");
    assert_eq!(fake.events()[0]["metadata"]["namespace"], "shop");

    let vs_resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    );
    let vss: Api<DynamicObject> = Api::namespaced_with(client, "shop", &vs_resource);
    let before = fake.get("VirtualService", "shop", "r").unwrap();
    let patch = json!({"status": {"conditions": [{"type": "Accepted", "status": "False", "reason": "Invalid"}]}});
    let patched = bounded(
        "patch",
        vss.patch_status("r", &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    .unwrap();
    assert_eq!(patched.data["status"]["conditions"][0]["status"], "False");
    assert_eq!(patched.data["spec"], before["spec"], "only status changes");
    assert_ne!(
        patched.metadata.resource_version,
        before["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from)
    );
    let statuses = fake.statuses();
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        (statuses[0].kind.as_str(), statuses[0].name.as_str()),
        ("VirtualService", "r")
    );
    assert_eq!(
        fake.requests()["POST /apis/authentication.k8s.io/v1/tokenreviews"],
        2
    );
}

#[tokio::test]
async fn requests_need_the_admin_token() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fake = FakeApiServer::start().await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
    stream
        .write_all(b"GET /api/v1/pods HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    bounded("401", stream.read_to_string(&mut answer))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("\"reason\":\"Unauthorized\""), "{answer}");
}
