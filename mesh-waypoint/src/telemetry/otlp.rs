//! Span export over OTLP/HTTP with the JSON encoding
//! (`POST {endpoint}/v1/traces`). Finished spans go into a bounded queue
//! (full → dropped and counted, the request path never waits); a
//! background task sends them in small batches.
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::trace::Span;

/// A finished span with what the exporter reports about it.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub span: Span,
    pub name: String,
    pub end: SystemTime,
    pub method: String,
    pub status: u16,
    pub cluster: Option<String>,
    pub flags: String,
}

/// Queue and batch sizes.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    pub queue: usize,
    pub batch: usize,
    /// A partial batch is sent after this long.
    pub flush_after: Duration,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            queue: 2048,
            batch: 64,
            flush_after: Duration::from_secs(1),
        }
    }
}

/// Handle to the export task; dropping every handle ends it.
#[derive(Debug, Clone)]
pub struct Exporter {
    tx: mpsc::Sender<SpanRecord>,
    dropped: Arc<AtomicU64>,
}

fn unix_nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

fn attr_str(key: &str, v: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": v } })
}

/// The OTLP JSON request body for these spans.
pub fn encode(service_name: &str, spans: &[SpanRecord]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut attributes = vec![
                attr_str("http.method", &s.method),
                json!({ "key": "http.status_code", "value": { "intValue": s.status.to_string() } }),
                attr_str("response_flags", &s.flags),
            ];
            if let Some(c) = &s.cluster {
                attributes.push(attr_str("upstream_cluster", c));
            }
            let mut span = json!({
                "traceId": s.span.trace_id_hex(),
                "spanId": s.span.span_id_hex(),
                "name": s.name,
                "kind": 2,
                "startTimeUnixNano": unix_nanos(s.span.start),
                "endTimeUnixNano": unix_nanos(s.end),
                "attributes": attributes,
                // STATUS_CODE_ERROR for server errors, else unset.
                "status": { "code": if s.status >= 500 { 2 } else { 0 } },
            });
            if let Some(p) = s.span.parent_span_id_hex() {
                span["parentSpanId"] = Value::String(p);
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [attr_str("service.name", service_name)] },
            "scopeSpans": [{
                "scope": { "name": "mesh-waypoint" },
                "spans": spans,
            }],
        }]
    })
}

impl Exporter {
    /// Starts the export task to `endpoint` (`http://host:4318`).
    pub fn spawn(endpoint: &str, service_name: String, opts: ExportOptions) -> Self {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        tokio::spawn(run(url, service_name, opts, rx));
        Exporter {
            tx,
            dropped: Arc::default(),
        }
    }

    /// Queues a span; drops it when the queue is full.
    pub fn export(&self, span: SpanRecord) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans dropped because the queue was full (or the task gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn run(
    url: String,
    service: String,
    opts: ExportOptions,
    mut rx: mpsc::Receiver<SpanRecord>,
) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut batch = Vec::with_capacity(opts.batch);
    loop {
        let first = match rx.recv().await {
            Some(s) => s,
            None => return,
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + opts.flush_after;
        while batch.len() < opts.batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let body = encode(&service, &batch).to_string();
        let n = batch.len();
        batch.clear();
        let req = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            tracing::warn!(%url, "OTLP endpoint is not a valid URL; spans dropped");
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                tracing::trace!(spans = n, "spans exported");
            }
            Ok(Ok(resp)) => {
                tracing::warn!(%url, status = %resp.status(), spans = n, "OTLP export refused")
            }
            Ok(Err(e)) => tracing::warn!(%url, error = %e, spans = n, "OTLP export failed"),
            Err(_) => tracing::warn!(%url, spans = n, "OTLP export timed out"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper::{body::Incoming, service::service_fn, Request, Response};
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;

    fn record(parent: Option<[u8; 8]>, status: u16) -> SpanRecord {
        SpanRecord {
            span: Span {
                trace_id: [0xab; 16],
                span_id: [0x01; 8],
                parent_span_id: parent,
                sampled: true,
                start: UNIX_EPOCH + Duration::from_millis(1500),
            },
            name: "GET reviews.default.svc.cluster.local".into(),
            end: UNIX_EPOCH + Duration::from_millis(1750),
            method: "GET".into(),
            status,
            cluster: Some("outbound|9080||reviews.default.svc.cluster.local".into()),
            flags: "-".into(),
        }
    }

    /// A one-shot OTLP receiver: returns (endpoint, first request's path
    /// and JSON body).
    pub(crate) async fn receiver() -> (String, mpsc::Receiver<(String, Value)>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let v: Value = serde_json::from_slice(&body).unwrap();
                            let _ = tx.send((path, v)).await;
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), rx)
    }

    #[tokio::test]
    async fn exports_otlp_json_to_a_receiver() {
        let (endpoint, mut rx) = receiver().await;
        let exporter = Exporter::spawn(
            &endpoint,
            "waypoint.default".into(),
            ExportOptions {
                queue: 16,
                batch: 2,
                flush_after: Duration::from_millis(50),
            },
        );
        exporter.export(record(Some([0x02; 8]), 200));
        exporter.export(record(None, 503));
        let (path, v) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no export within 10s")
            .unwrap();
        assert_eq!(path, "/v1/traces");
        let rs = &v["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0]["value"]["stringValue"],
            "waypoint.default"
        );
        let spans = rs["scopeSpans"][0]["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);
        let s = &spans[0];
        assert_eq!(s["traceId"], "ab".repeat(16));
        assert_eq!(s["spanId"], "01".repeat(8));
        assert_eq!(s["parentSpanId"], "02".repeat(8));
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1500000000");
        assert_eq!(s["endTimeUnixNano"], "1750000000");
        assert_eq!(s["attributes"][0]["key"], "http.method");
        assert_eq!(s["attributes"][0]["value"]["stringValue"], "GET");
        assert_eq!(s["attributes"][1]["value"]["intValue"], "200");
        assert_eq!(
            s["attributes"][3]["value"]["stringValue"],
            "outbound|9080||reviews.default.svc.cluster.local"
        );
        assert!(spans[1].get("parentSpanId").is_none());
        assert_eq!(spans[1]["status"]["code"], 2);
        assert_eq!(exporter.dropped(), 0);
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        // Current-thread runtime: the export task cannot drain the queue
        // before this test yields.
        let exporter = Exporter::spawn(
            "http://127.0.0.1:9",
            "w".into(),
            ExportOptions {
                queue: 2,
                batch: 8,
                flush_after: Duration::from_millis(10),
            },
        );
        for _ in 0..5 {
            exporter.export(record(None, 200));
        }
        assert_eq!(exporter.dropped(), 3);
    }
}
