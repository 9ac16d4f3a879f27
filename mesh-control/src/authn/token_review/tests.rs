//! The TokenReviewer against a tiny in-test HTTP/1.1 API server on
//! loopback, reached through a kubeconfig with `server: http://…` and a
//! bearer token (what the fake API server of the e2e tests writes).
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::*;
use crate::apiserver::kube_client;

/// Aborts the responder when the test ends, also on panic.
struct Responder {
    addr: std::net::SocketAddr,
    reviews: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn responder() -> Responder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reviews = Arc::new(AtomicUsize::new(0));
    let counter = reviews.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(conn, counter.clone()));
        }
    });
    Responder {
        addr,
        reviews,
        task,
    }
}

/// Serves up to 100 requests on one connection.
async fn serve(mut conn: TcpStream, reviews: Arc<AtomicUsize>) {
    for _ in 0..100 {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 1 << 20 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: serde_json::Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
        let authorized = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("authorization: Bearer admin-token"));
        let (code, answer) =
            if !head.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews") {
                (404, json!({"kind": "Status", "code": 404}))
            } else if !authorized {
                (401, json!({"kind": "Status", "code": 401}))
            } else {
                reviews.fetch_add(1, Ordering::SeqCst);
                (201, review(&body))
            };
        let text = answer.to_string();
        let response = format!(
            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if conn.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Tokens: `web` (pod-bound), `agent` (node-bound), `user` (not a
/// service account), `other-aud` (reviewed for another audience); any
/// other is refused.
fn review(request: &serde_json::Value) -> serde_json::Value {
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let audiences = request["spec"]["audiences"].clone();
    let ok = |user: serde_json::Value, audiences: serde_json::Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "status": {"authenticated": true, "user": user, "audiences": audiences}})
    };
    match token {
        "web" => ok(
            json!({"username": "system:serviceaccount:default:web",
                   "extra": {"authentication.kubernetes.io/pod-name": ["web-1"]}}),
            audiences,
        ),
        "agent" => ok(
            json!({"username": "system:serviceaccount:istio-system:mesh-agent",
                   "extra": {"authentication.kubernetes.io/node-name": ["node-a"]}}),
            audiences,
        ),
        "user" => ok(json!({"username": "alice"}), audiences),
        "other-aud" => ok(
            json!({"username": "system:serviceaccount:default:web"}),
            json!(["api"]),
        ),
        _ => json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "status": {"authenticated": false, "error": "invalid bearer token"}}),
    }
}

fn kubeconfig(dir: &std::path::Path, addr: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             users:\n- name: admin\n  user:\n    token: admin-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: admin\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn reviews_tokens_over_plain_http_and_caches_results() {
    let server = responder().await;
    let dir = tempfile::tempdir().unwrap();
    let client = kube_client(Some(&kubeconfig(dir.path(), server.addr)))
        .await
        .unwrap();
    let reviewer = TokenReviewer::new(client, "istio-ca");

    let web = reviewer.authenticate("web").await.unwrap();
    assert_eq!(
        web,
        Caller {
            namespace: "default".into(),
            service_account: "web".into(),
            pod_name: Some("web-1".into()),
            node_name: None,
        }
    );
    let agent = reviewer.authenticate("agent").await.unwrap();
    assert_eq!(agent.node_name.as_deref(), Some("node-a"));
    assert_eq!(agent.service_account, "mesh-agent");
    assert!(matches!(
        reviewer.authenticate("user").await,
        Err(AuthError::NotServiceAccount(u)) if u == "alice"
    ));
    assert!(matches!(
        reviewer.authenticate("forged").await,
        Err(AuthError::Rejected(m)) if m.contains("invalid bearer token")
    ));
    assert!(matches!(
        reviewer.authenticate("other-aud").await,
        Err(AuthError::Rejected(m)) if m.contains("istio-ca")
    ));
    assert_eq!(server.reviews.load(Ordering::SeqCst), 5);

    // Cached: no new review for tokens seen within the minute, accepted
    // or refused.
    assert_eq!(reviewer.authenticate("web").await.unwrap(), web);
    assert!(reviewer.authenticate("forged").await.is_err());
    assert_eq!(server.reviews.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn an_unreachable_api_server_is_unavailable_and_not_cached() {
    let server = responder().await;
    let addr = server.addr;
    drop(server);
    let dir = tempfile::tempdir().unwrap();
    let client = kube_client(Some(&kubeconfig(dir.path(), addr)))
        .await
        .unwrap();
    let reviewer = TokenReviewer::new(client, "istio-ca");
    let error = reviewer.authenticate("web").await.unwrap_err();
    assert!(matches!(error, AuthError::Unavailable(_)), "{error}");
    assert!(reviewer.cache.lock().unwrap().is_empty());
}

/// Concurrent reviews of one token share one TokenReview: a reconnect
/// storm of one agent is one API call.
#[tokio::test]
async fn concurrent_reviews_of_one_token_share_one_call() {
    let server = responder().await;
    let dir = tempfile::tempdir().unwrap();
    let client = kube_client(Some(&kubeconfig(dir.path(), server.addr)))
        .await
        .unwrap();
    let reviewer = TokenReviewer::new(client, "istio-ca");
    let callers = (0..32).map(|_| reviewer.authenticate("web"));
    for result in futures::future::join_all(callers).await {
        assert_eq!(result.unwrap().service_account, "web");
    }
    assert_eq!(server.reviews.load(Ordering::SeqCst), 1);
}

/// A full cache drops its oldest entries, not everything: the tokens seen
/// last are still answered without a review.
#[tokio::test]
async fn a_full_cache_keeps_its_newest_entries() {
    let server = responder().await;
    let dir = tempfile::tempdir().unwrap();
    let client = kube_client(Some(&kubeconfig(dir.path(), server.addr)))
        .await
        .unwrap();
    let reviewer = TokenReviewer::new(client, "istio-ca");
    let tokens: Vec<String> = (0..CACHE_MAX + 1).map(|i| format!("forged-{i}")).collect();
    use futures::StreamExt as _;
    futures::stream::iter(&tokens)
        .for_each_concurrent(16, |t| async {
            assert!(reviewer.authenticate(t).await.is_err());
        })
        .await;
    let reviewed = server.reviews.load(Ordering::SeqCst);
    assert_eq!(reviewed, tokens.len());
    for t in &tokens[tokens.len() - 100..] {
        assert!(reviewer.authenticate(t).await.is_err());
    }
    assert_eq!(server.reviews.load(Ordering::SeqCst), reviewed);
}
