//! `watch_kubernetes` startup against a tiny in-test HTTP/1.1 API server on
//! loopback (the full behaviour — relists, rejections, identical xDS — is
//! tested against the fake API server in tests/tests/kube_source.rs): the
//! first state waits for every kind's first list, and a kind that cannot
//! be listed fails startup naming it.
use std::{net::SocketAddr, time::Duration};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::*;
use crate::kube_client::kube_client;

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
