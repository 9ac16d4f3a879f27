//! Per-request telemetry: Istio's `istio_request*` metrics with
//! `reporter="waypoint"` (`"source"` as a gateway), the access log, trace propagation and export.
//!
//! - [`labels`]: the Istio label set from a [`RequestRecord`] and the
//!   Address view; [`metrics`]: the four request metrics; [`series`]:
//!   the label sets and series of recent requests, resolved once.
//! - [`access_log`]: one JSON line per request (target `access`).
//! - [`tcp`]: Istio's `istio_tcp_*` metrics and the access log line of a
//!   gateway's `tcp_proxy` connections ([`tcp::TcpObserver`]).
//! - [`trace`]: W3C trace context / B3 propagation; [`otlp`]: span export
//!   (OpenTelemetry SDK, OTLP over gRPC).
//!
//! [`Telemetry::encode_metrics`] also carries the upstream health series
//! (`mesh_waypoint_*`) once [`Telemetry::register_upstream`] was called.
pub mod access_log;
pub mod labels;
pub mod metrics;
pub mod otlp;
pub mod record;
pub mod series;
pub mod tcp;
pub mod tcp_open;
pub mod trace;

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};

pub use record::{Peer, RequestRecord};

use crate::{
    sync::MutexExt,
    upstream::{Directory, UpstreamMetrics},
};

/// What telemetry is built with.
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    /// `http://host:4317`: spans are exported there (OTLP over gRPC).
    pub otlp_endpoint: Option<String>,
    pub access_log: bool,
    /// The waypoint's own workload: uid, name, namespace (the OTLP
    /// `service.name` and the access log's `waypoint` field).
    pub workload_uid: String,
    pub workload_name: String,
    pub namespace: String,
    /// Export queue and batch sizes; defaults when None.
    pub export: Option<otlp::ExportOptions>,
    /// The `reporter` label: waypoint, or source as a gateway.
    pub reporter: labels::Reporter,
    /// The proxy's name (waypoint or gateway: Istio's canonical service
    /// of its spans); the workload name when empty.
    pub canonical_service: String,
    /// The xDS node id (the spans' `node_id` tag).
    pub node_id: String,
    /// `istio.mesh_id` of the spans; `cluster.local` when empty.
    pub mesh_id: String,
}

pub struct Telemetry {
    registry: Mutex<Registry>,
    metrics: metrics::RequestMetrics,
    /// Label sets and series of recent requests.
    series: Mutex<series::SeriesCache>,
    access_log: AtomicBool,
    exporter: Option<otlp::Exporter>,
    spans_dropped: Counter,
    waypoint: String,
    reporter: labels::Reporter,
    /// Who reports the spans (OTLP resource, `istio.*` tags).
    span_source: otlp::SpanSource,
    tcp: tcp::TcpMetrics,
    /// Open `tcp_proxy` connections, folded into `tcp` at each scrape.
    open_tcp: tcp_open::OpenConns,
    /// The proxy's own workload: uid, name, namespace.
    own: (String, String, String),
}

impl Telemetry {
    /// Must run inside a tokio runtime when an OTLP endpoint is set (the
    /// exporter's gRPC channel runs there). An endpoint that is not a
    /// valid URI is logged and tracing stays off; metrics are unaffected.
    pub fn new(opts: TelemetryOptions) -> Arc<Self> {
        let mut registry = Registry::default();
        let metrics = metrics::RequestMetrics::default();
        metrics.register(&mut registry);
        let tcp = tcp::TcpMetrics::default();
        tcp.register(&mut registry);
        let spans_dropped = Counter::default();
        registry.register(
            "mesh_waypoint_spans_dropped",
            "Spans dropped because the export queue was full",
            spans_dropped.clone(),
        );
        let waypoint = format!("{}.{}", opts.workload_name, opts.namespace);
        let canonical = if opts.canonical_service.is_empty() {
            opts.workload_name.clone()
        } else {
            opts.canonical_service.clone()
        };
        let span_source = otlp::SpanSource {
            service_name: format!("{canonical}.{}", opts.namespace),
            canonical_service: canonical,
            namespace: opts.namespace.clone(),
            pod_name: opts.workload_name.clone(),
            node_id: opts.node_id.clone(),
            mesh_id: if opts.mesh_id.is_empty() {
                "cluster.local".to_string()
            } else {
                opts.mesh_id.clone()
            },
        };
        let exporter = opts.otlp_endpoint.as_deref().and_then(|e| {
            otlp::Exporter::spawn(e, &span_source, opts.export.unwrap_or_default())
                .inspect_err(|err| tracing::error!(error = %err, "span export is off"))
                .ok()
        });
        Arc::new(Telemetry {
            registry: Mutex::new(registry),
            metrics,
            series: Mutex::default(),
            access_log: AtomicBool::new(opts.access_log),
            exporter,
            spans_dropped,
            waypoint,
            reporter: opts.reporter,
            span_source,
            tcp,
            open_tcp: Default::default(),
            own: (opts.workload_uid, opts.workload_name, opts.namespace),
        })
    }

    /// Adds the upstream side's `mesh_waypoint_*` series to `/metrics`.
    pub fn register_upstream(&self, m: &UpstreamMetrics) {
        m.register(&mut self.registry.lock_unpoisoned());
    }

    pub fn set_access_log(&self, on: bool) {
        self.access_log.store(on, Ordering::Relaxed);
    }

    pub fn access_log_enabled(&self) -> bool {
        self.access_log.load(Ordering::Relaxed)
    }

    /// Metrics, access log line and span export of one finished request.
    pub fn record(&self, r: &RequestRecord, dir: &Arc<Directory>) {
        let (uid, name, namespace) = &self.own;
        // A waypoint reports the client, found by its address.
        let by_ip = self.reporter == labels::Reporter::Waypoint;
        let resolved = self.series.lock_unpoisoned().get(r, by_ip, dir, || {
            let labels = labels::RequestLabels::reported_by(self.reporter, r, dir, || {
                tcp::own_side(uid, name, namespace, dir)
            });
            let series = self.metrics.series(&labels);
            series::Resolved { labels, series }
        });
        resolved.series.observe(
            r.duration.as_secs_f64() * 1000.0,
            r.request_bytes,
            r.response_bytes,
        );
        let l = &resolved.labels;
        if self.access_log_enabled() {
            let mut line = access_log::line(r, l);
            line["waypoint"] = self.waypoint.clone().into();
            tracing::info!(target: "access", "{line}");
        }
        if let (Some(exporter), Some(span)) = (&self.exporter, &r.span) {
            if span.sampled {
                let before = exporter.dropped();
                exporter.export(otlp::request_span(
                    r,
                    span,
                    &l.response_flags,
                    &self.span_source,
                ));
                if exporter.dropped() > before {
                    self.spans_dropped.inc();
                }
            }
        }
    }

    /// Sends the spans queued now (tests; shutdown flushes on its own).
    pub fn flush_spans(&self) {
        if let Some(exporter) = &self.exporter {
            exporter.flush();
        }
    }

    fn tcp_labels(&self, r: &tcp::TcpRecord, dir: &Directory) -> tcp::TcpLabels {
        let (uid, name, namespace) = &self.own;
        let source = tcp::own_side(uid, name, namespace, dir);
        tcp::tcp_labels(self.reporter, source, r, dir)
    }

    /// Counts an opened `tcp_proxy` connection; its bytes, counted into
    /// `live` by the relay, reach the metrics at each scrape.
    pub fn tcp_opened(
        &self,
        r: &tcp::TcpRecord,
        dir: &Directory,
        live: Arc<mesh_hbone::LiveBytes>,
    ) -> tcp_open::OpenToken {
        let l = self.tcp_labels(r, dir);
        self.tcp.opened(&l);
        self.open_tcp.insert(l, live)
    }

    /// Counts a closed `tcp_proxy` connection and the bytes no scrape has
    /// counted; writes its access log line when the access log is on.
    pub fn tcp_closed(&self, r: &tcp::TcpRecord, dir: &Directory, open: tcp_open::OpenToken) {
        let (received, sent) = self.open_tcp.remove(open);
        let l = self.tcp_labels(r, dir);
        self.tcp.closed(
            &l,
            r.sent.saturating_sub(sent),
            r.received.saturating_sub(received),
        );
        if self.access_log_enabled() {
            let mut line = tcp::line(r, &l);
            line["waypoint"] = self.waypoint.clone().into();
            tracing::info!(target: "access", "{line}");
        }
    }

    /// Prometheus text exposition of everything registered.
    pub fn encode_metrics(&self) -> String {
        self.open_tcp.fold(&self.tcp);
        let mut out = String::new();
        let registry = self.registry.lock_unpoisoned();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests;
