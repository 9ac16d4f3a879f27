//! `podctl http`: a bounded batch of real HTTP requests (HTTP/1.1
//! keep-alive or h2c) from inside a pod, summarised by status and by the
//! `version`/`pod` that `podhttp` names in each reply — what the L7
//! routing tests count.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Empty};
use hyper::{body::Bytes, Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

/// One batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub url: Uri,
    pub method: hyper::Method,
    pub headers: Vec<(String, String)>,
    pub count: usize,
    /// Connections in parallel; each sends its share sequentially.
    pub concurrency: usize,
    pub h2: bool,
    pub timeout: Duration,
    /// The whole batch stops after this, whatever is left.
    pub max_time: Duration,
}

/// What a batch saw.
#[derive(Debug, Default)]
pub struct Summary {
    pub statuses: BTreeMap<String, u64>,
    pub versions: BTreeMap<String, u64>,
    pub pods: BTreeMap<String, u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub durations_ms: Vec<u64>,
    /// Headers of the last response (to see e.g. `x-envoy-*`).
    pub last_headers: BTreeMap<String, String>,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        let mut durations = self.durations_ms.clone();
        durations.sort_unstable();
        json!({
            "count": self.statuses.values().sum::<u64>() + self.errors,
            "statuses": self.statuses,
            "versions": self.versions,
            "pods": self.pods,
            "errors": self.errors,
            "first_error": self.first_error,
            "durations_ms": durations,
            "last_headers": self.last_headers,
        })
    }

    fn record(&mut self, outcome: Result<(u16, Bytes, BTreeMap<String, String>), String>, ms: u64) {
        match outcome {
            Ok((status, body, headers)) => {
                *self.statuses.entry(status.to_string()).or_default() += 1;
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    if let Some(version) = v["version"].as_str() {
                        *self.versions.entry(version.to_string()).or_default() += 1;
                    }
                    if let Some(pod) = v["pod"].as_str() {
                        *self.pods.entry(pod.to_string()).or_default() += 1;
                    }
                }
                self.durations_ms.push(ms);
                self.last_headers = headers;
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Runs the batch on a current-thread runtime.
pub fn run(batch: Batch) -> anyhow::Result<Summary> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_async(batch))
}

async fn run_async(batch: Batch) -> anyhow::Result<Summary> {
    let summary = Arc::new(Mutex::new(Summary::default()));
    let deadline = Instant::now() + batch.max_time;
    let concurrency = batch.concurrency.clamp(1, 256);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let share = batch.count / concurrency + usize::from(worker < batch.count % concurrency);
        let batch = batch.clone();
        let summary = Arc::clone(&summary);
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<Sender> = None;
            for _ in 0..share {
                if Instant::now() >= deadline {
                    break;
                }
                let start = Instant::now();
                let outcome = tokio::time::timeout(batch.timeout, one(&batch, &mut conn)).await;
                let outcome = match outcome {
                    Ok(r) => r,
                    Err(_) => {
                        conn = None;
                        Err(format!("timed out after {:?}", batch.timeout))
                    }
                };
                if outcome.is_err() {
                    conn = None;
                }
                let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                summary.lock().expect("summary").record(outcome, ms);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let summary = std::mem::take(&mut *summary.lock().expect("summary"));
    Ok(summary)
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

async fn connect(batch: &Batch) -> Result<Sender, String> {
    let host = batch.url.host().ok_or("url has no host")?;
    let port = batch.url.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let io = TokioIo::new(tcp);
    if batch.h2 {
        let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Sender::H2(tx))
    } else {
        let (tx, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Sender::H1(tx))
    }
}

async fn one(
    batch: &Batch,
    conn: &mut Option<Sender>,
) -> Result<(u16, Bytes, BTreeMap<String, String>), String> {
    if conn.as_ref().is_none_or(|c| match c {
        Sender::H1(tx) => tx.is_closed(),
        Sender::H2(tx) => tx.is_closed(),
    }) {
        *conn = Some(connect(batch).await?);
    }
    let authority = batch
        .url
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let mut req = Request::builder().method(batch.method.clone());
    req = match conn.as_ref() {
        Some(Sender::H2(_)) => req.uri(batch.url.clone()),
        _ => req
            .uri(
                batch
                    .url
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.as_str().to_string()),
            )
            .header(hyper::header::HOST, authority),
    };
    for (k, v) in &batch.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = match conn.as_mut().expect("connected") {
        Sender::H1(tx) => {
            tx.ready().await.map_err(|e| e.to_string())?;
            tx.send_request(req).await
        }
        Sender::H2(tx) => {
            tx.ready().await.map_err(|e| e.to_string())?;
            tx.send_request(req).await
        }
    }
    .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_versions_from_podhttp_replies_and_errors_apart() {
        let mut s = Summary::default();
        let reply = |v: &str| {
            Ok((
                200,
                Bytes::from(format!(r#"{{"pod":"r-{v}","version":"{v}"}}"#)),
                BTreeMap::new(),
            ))
        };
        s.record(reply("v1"), 3);
        s.record(reply("v2"), 5);
        s.record(reply("v2"), 4);
        s.record(
            Ok((503, Bytes::from("no healthy upstream"), BTreeMap::new())),
            1,
        );
        s.record(Err("connect: refused".into()), 0);
        let j = s.to_json();
        assert_eq!(j["statuses"]["200"], 3);
        assert_eq!(j["statuses"]["503"], 1);
        assert_eq!(j["versions"]["v2"], 2);
        assert_eq!(j["pods"]["r-v1"], 1);
        assert_eq!(j["errors"], 1);
        assert_eq!(j["count"], 5);
        assert_eq!(j["durations_ms"], json!([1, 3, 4, 5]));
    }
}
