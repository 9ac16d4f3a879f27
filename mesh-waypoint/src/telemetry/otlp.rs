//! Span export with OpenTelemetry's SDK: each traced request becomes one
//! server span with Istio's operation name (`<service host>:<port>/*`)
//! and Envoy/Istio's span tags, handed to the SDK's batch span processor,
//! which sends OTLP over gRPC (tonic) to `--otlp-endpoint`, a collector's
//! `:4317`. The queue is bounded: when it is full the span is dropped and
//! counted; the request path never waits for the network.
use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use opentelemetry::{
    trace::{
        Span as _, SpanBuilder, SpanId, SpanKind, Status, TraceId, Tracer as _, TracerProvider,
    },
    KeyValue,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData,
        SpanExporter, SpanProcessor,
    },
    Resource,
};

use super::{labels::UNKNOWN, trace::Span, RequestRecord};
use crate::upstream::cluster_name::IstioClusterName;

/// A finished span: the proxy's ids and times, its name and tags.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub span: Span,
    pub name: String,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// The span's status is ERROR (a 5xx answer).
    pub error: bool,
}

/// Who reports the spans: the OTLP resource and the per-span Istio tags.
#[derive(Debug, Clone, Default)]
pub struct SpanSource {
    /// `service.name`: `<canonical service>.<namespace>`, as Istio names
    /// a proxy's spans.
    pub service_name: String,
    /// `istio.canonical_service`: the waypoint or gateway name.
    pub canonical_service: String,
    pub namespace: String,
    pub pod_name: String,
    /// The xDS node id (`waypoint~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`).
    pub node_id: String,
    /// `istio.mesh_id` (Istio's default: `cluster.local`).
    pub mesh_id: String,
}

impl SpanSource {
    fn resource(&self) -> Resource {
        Resource::builder_empty()
            .with_service_name(self.service_name.clone())
            .with_attributes([
                KeyValue::new("k8s.namespace.name", self.namespace.clone()),
                KeyValue::new("k8s.pod.name", self.pod_name.clone()),
                KeyValue::new("service.instance.id", self.node_id.clone()),
                KeyValue::new("istio.canonical_service", self.canonical_service.clone()),
                KeyValue::new("istio.mesh_id", self.mesh_id.clone()),
            ])
            .build()
    }
}

/// The span of one traced request, named and tagged as Envoy in Istio
/// does: operation `<destination service host>:<port>/*` (the route
/// decorator; host and port of the upstream cluster), tags
/// `component=proxy`, `node_id`, `http.*`, `upstream_cluster`,
/// `response_flags`, `peer.address` and the `istio.*` set. Tag values are
/// strings, as Envoy writes them.
pub fn request_span(r: &RequestRecord, span: &Span, flags: &str, own: &SpanSource) -> SpanRecord {
    // The destination service is the cluster's host: a gateway's virtual
    // host may be `*`.
    let (name, authority) = match r.cluster.as_deref().and_then(IstioClusterName::parse) {
        Some(IstioClusterName { port, host, .. }) => {
            (format!("{host}:{port}/*"), format!("{host}:{port}"))
        }
        None => {
            let host = r.service.as_deref().unwrap_or(UNKNOWN);
            (format!("{host}/*"), host.to_string())
        }
    };
    let mut attributes = vec![
        KeyValue::new("component", "proxy"),
        KeyValue::new("node_id", own.node_id.clone()),
        KeyValue::new("http.method", r.method.to_string()),
        KeyValue::new("http.url", format!("http://{authority}{}", r.path)),
        KeyValue::new("http.status_code", r.status.to_string()),
        KeyValue::new("response_flags", flags.to_string()),
        KeyValue::new("request_size", r.request_bytes.to_string()),
        KeyValue::new("response_size", r.response_bytes.to_string()),
        KeyValue::new("istio.canonical_service", own.canonical_service.clone()),
        KeyValue::new("istio.canonical_revision", "latest"),
        KeyValue::new("istio.mesh_id", own.mesh_id.clone()),
        KeyValue::new("istio.namespace", own.namespace.clone()),
    ];
    if let Some(c) = r.cluster.as_deref() {
        attributes.push(KeyValue::new("upstream_cluster", c.to_string()));
        attributes.push(KeyValue::new("upstream_cluster.name", c.to_string()));
    }
    if let Some(ip) = r.source.ip {
        attributes.push(KeyValue::new("peer.address", ip.to_string()));
    }
    let error = r.status >= 500;
    if error {
        attributes.push(KeyValue::new("error", "true"));
    }
    SpanRecord {
        span: span.clone(),
        name,
        end: span.start + r.duration,
        attributes,
        error,
    }
}

/// Queue and batch sizes.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Spans waiting or being sent; one more is dropped and counted.
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

/// The export pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter for endpoint {endpoint:?}: {source}")]
pub struct ExportError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The OTLP exporter with the in-flight count kept: a batch sent (or
/// refused) frees its spans' places in the queue.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    in_flight: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.in_flight.fetch_sub(n, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::warn!(error = %e, spans = n, "OTLP export failed");
        }
        result
    }

    fn shutdown(&mut self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Bounds the batch processor by the spans in flight, so a drop is seen
/// (and counted) here rather than inside the SDK.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    in_flight: Arc<AtomicUsize>,
    cap: usize,
    dropped: Arc<AtomicU64>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Handle to the export pipeline; the last handle dropped flushes and
/// stops it.
#[derive(Debug, Clone)]
pub struct Exporter {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    dropped: Arc<AtomicU64>,
}

impl Exporter {
    /// Builds the pipeline to `endpoint` (`http://collector:4317`, OTLP
    /// over gRPC). Must run inside a tokio runtime (the gRPC channel's
    /// worker is spawned there); the connection is made lazily, so an
    /// unreachable collector costs failed exports, not start-up.
    pub fn spawn(
        endpoint: &str,
        source: &SpanSource,
        opts: ExportOptions,
    ) -> Result<Self, ExportError> {
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| ExportError {
                endpoint: endpoint.to_string(),
                source,
            })?;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let cap = opts.queue.max(1);
        let batch = opts.batch.clamp(1, cap);
        let config = BatchConfigBuilder::default()
            // Above our own bound: the SDK's queue never fills first.
            .with_max_queue_size(cap + batch)
            .with_max_export_batch_size(batch)
            .with_scheduled_delay(opts.flush_after)
            .build();
        let processor = BatchSpanProcessor::builder(Counted {
            inner: otlp,
            in_flight: in_flight.clone(),
        })
        .with_batch_config(config)
        .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(source.resource())
            .with_span_processor(Bounded {
                inner: processor,
                in_flight,
                cap,
                dropped: dropped.clone(),
            })
            .build();
        let tracer = provider.tracer("mesh-waypoint");
        Ok(Exporter {
            provider,
            tracer,
            dropped,
        })
    }

    /// Records a finished span; drops it (counted) when the queue is full.
    pub fn export(&self, r: SpanRecord) {
        let parent = r.span.parent_context();
        let builder = SpanBuilder::from_name(r.name)
            .with_kind(SpanKind::Server)
            .with_trace_id(TraceId::from_bytes(r.span.trace_id))
            .with_span_id(SpanId::from_bytes(r.span.span_id))
            .with_start_time(r.span.start)
            .with_attributes(r.attributes)
            .with_status(if r.error {
                Status::error("")
            } else {
                Status::Unset
            });
        let mut span = self.tracer.build_with_context(builder, &parent);
        span.end_with_timestamp(r.end);
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends what is queued now (blocks up to the export timeout).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "OTLP flush failed");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use opentelemetry_proto::tonic::collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use tokio::sync::mpsc;

    use super::*;

    /// A real OTLP/gRPC trace receiver (tonic) on loopback: every export
    /// request arrives on the channel.
    struct Receiver(mpsc::Sender<ExportTraceServiceRequest>);

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            req: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.send(req.into_inner()).await;
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// Starts a receiver; returns its endpoint and the requests it got.
    pub(crate) async fn receiver() -> (String, mpsc::Receiver<ExportTraceServiceRequest>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Receiver(tx)))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (format!("http://{addr}"), rx)
    }

    pub(crate) fn span(parent: Option<[u8; 8]>) -> Span {
        Span {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            parent_span_id: parent,
            sampled: true,
            trace_state: String::new(),
            start: SystemTime::UNIX_EPOCH + Duration::from_millis(1500),
        }
    }

    fn record(parent: Option<[u8; 8]>, error: bool) -> SpanRecord {
        SpanRecord {
            span: span(parent),
            name: "reviews.default.svc.cluster.local:9080/*".into(),
            end: SystemTime::UNIX_EPOCH + Duration::from_millis(1750),
            attributes: vec![KeyValue::new("http.method", "GET")],
            error,
        }
    }

    fn source() -> SpanSource {
        SpanSource {
            service_name: "waypoint.default".into(),
            canonical_service: "waypoint".into(),
            namespace: "default".into(),
            pod_name: "waypoint-0".into(),
            node_id: "waypoint~10.1.0.9~waypoint-0.default~default.svc.cluster.local".into(),
            mesh_id: "cluster.local".into(),
        }
    }

    fn attr<'a>(
        attrs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
        key: &str,
    ) -> Option<&'a opentelemetry_proto::tonic::common::v1::any_value::Value> {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_otlp_grpc_to_a_receiver() {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        let (endpoint, mut rx) = receiver().await;
        let exporter = Exporter::spawn(
            &endpoint,
            &source(),
            ExportOptions {
                queue: 16,
                batch: 2,
                flush_after: Duration::from_millis(50),
            },
        )
        .unwrap();
        exporter.export(record(Some([0x02; 8]), false));
        exporter.export(record(None, true));
        let mut spans = Vec::new();
        let mut resource = None;
        while spans.len() < 2 {
            let req = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("no export within 10s")
                .unwrap();
            for rs in req.resource_spans {
                resource = rs.resource.clone();
                for ss in rs.scope_spans {
                    spans.extend(ss.spans);
                }
            }
        }
        let resource = resource.expect("resource");
        assert_eq!(
            attr(&resource.attributes, "service.name"),
            Some(&V::StringValue("waypoint.default".into()))
        );
        assert_eq!(
            attr(&resource.attributes, "k8s.namespace.name"),
            Some(&V::StringValue("default".into()))
        );
        let s = &spans[0];
        assert_eq!(s.trace_id, vec![0xab; 16]);
        assert_eq!(s.span_id, vec![0x01; 8]);
        assert_eq!(s.parent_span_id, vec![0x02; 8]);
        assert_eq!(s.name, "reviews.default.svc.cluster.local:9080/*");
        assert_eq!(s.kind, 2, "SPAN_KIND_SERVER");
        assert_eq!(s.start_time_unix_nano, 1_500_000_000);
        assert_eq!(s.end_time_unix_nano, 1_750_000_000);
        assert_eq!(
            attr(&s.attributes, "http.method"),
            Some(&V::StringValue("GET".into()))
        );
        assert!(spans[1].parent_span_id.is_empty());
        assert_eq!(spans[1].status.as_ref().map(|st| st.code), Some(2));
        assert_eq!(exporter.dropped(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_queue_drops_and_counts() {
        // Nothing listens on port 9 and the first batch waits 60 s: the
        // queue holds two spans, the other three are dropped.
        let exporter = Exporter::spawn(
            "http://127.0.0.1:9",
            &source(),
            ExportOptions {
                queue: 2,
                batch: 8,
                flush_after: Duration::from_secs(60),
            },
        )
        .unwrap();
        for _ in 0..5 {
            exporter.export(record(None, false));
        }
        assert_eq!(exporter.dropped(), 3);
    }

    #[tokio::test]
    async fn an_endpoint_that_is_not_a_uri_is_refused_by_name() {
        let err = Exporter::spawn("not a uri", &source(), ExportOptions::default()).unwrap_err();
        assert!(err.to_string().contains("\"not a uri\""), "{err}");
    }

    #[test]
    fn names_and_tags_spans_as_istio_does() {
        let r = RequestRecord {
            source: super::super::Peer {
                principal: None,
                ip: Some("10.1.0.5".parse().unwrap()),
            },
            service: Some("reviews.default.svc.cluster.local".into()),
            cluster: Some("outbound|9080|v2|reviews.default.svc.cluster.local".into()),
            workload: None,
            method: http::Method::GET,
            path: "/reviews/0".into(),
            protocol: "http",
            status: 503,
            grpc_status: None,
            flags: "UF".into(),
            duration: Duration::from_millis(20),
            request_bytes: 0,
            response_bytes: 19,
            span: None,
        };
        let s = request_span(&r, &span(None), "UF", &source());
        assert_eq!(s.name, "reviews.default.svc.cluster.local:9080/*");
        // A gateway's virtual host `*`: the cluster still names the service.
        let gateway = RequestRecord {
            service: Some("*".into()),
            ..r.clone()
        };
        let g = request_span(&gateway, &span(None), "-", &source());
        assert_eq!(g.name, "reviews.default.svc.cluster.local:9080/*");
        assert!(s.error);
        let get = |k: &str| {
            s.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("component").as_deref(), Some("proxy"));
        assert_eq!(
            get("http.url").as_deref(),
            Some("http://reviews.default.svc.cluster.local:9080/reviews/0")
        );
        assert_eq!(get("http.status_code").as_deref(), Some("503"));
        assert_eq!(get("response_flags").as_deref(), Some("UF"));
        assert_eq!(get("peer.address").as_deref(), Some("10.1.0.5"));
        assert_eq!(get("istio.canonical_service").as_deref(), Some("waypoint"));
        assert_eq!(get("istio.mesh_id").as_deref(), Some("cluster.local"));
        assert_eq!(
            get("upstream_cluster").as_deref(),
            Some("outbound|9080|v2|reviews.default.svc.cluster.local")
        );
        assert_eq!(s.end, s.span.start + Duration::from_millis(20));
    }
}
