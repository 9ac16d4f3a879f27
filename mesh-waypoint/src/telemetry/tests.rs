//! Telemetry end to end: labels from the Address view, the Prometheus text,
//! the access log line.
use std::{sync::Arc, time::Duration};

use mesh_xds::proto::istio_workload;

use super::{labels::RequestLabels, *};
use crate::upstream::{directory::tests::workload, ServiceEntry, WorkloadEntry};

fn dir() -> Arc<Directory> {
    let mut src = workload(
        "Kubernetes//Pod/default/productpage-1",
        [10, 244, 1, 2],
        true,
        Some([172, 18, 0, 2]),
    );
    src.service_account = "bookinfo-productpage".into();
    src.workload_name = "productpage-v1".into();
    src.canonical_name = "productpage".into();
    src.cluster_id = "Kubernetes".into();
    let dst = workload(
        "Kubernetes//Pod/default/reviews-v2-1",
        [10, 244, 2, 3],
        true,
        Some([172, 18, 0, 3]),
    );
    Arc::new(Directory::build(
        [
            WorkloadEntry::from_proto("a", &src),
            WorkloadEntry::from_proto("b", &dst),
        ],
        [ServiceEntry::from_proto(&istio_workload::Service {
            name: "reviews".into(),
            namespace: "default".into(),
            hostname: "reviews.default.svc.cluster.local".into(),
            ..Default::default()
        })],
    ))
}

fn record(principal: Option<&str>) -> RequestRecord {
    RequestRecord {
        source: Peer {
            principal: principal.map(str::to_string),
            ip: Some("10.244.1.2".parse().unwrap()),
        },
        service: Some(Arc::from("reviews.default.svc.cluster.local")),
        cluster: Some(Arc::from(
            "outbound|9080|v2|reviews.default.svc.cluster.local",
        )),
        workload: Some(Arc::from("Kubernetes//Pod/default/reviews-v2-1")),
        method: http::Method::GET,
        path: "/reviews/0".into(),
        protocol: "http",
        status: 503,
        grpc_status: None,
        flags: "UO".into(),
        duration: Duration::from_millis(12),
        request_bytes: 0,
        response_bytes: 81,
        span: None,
    }
}

const PRODUCTPAGE: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";

#[test]
fn labels_name_both_workloads_and_the_service() {
    let l = RequestLabels::new(&record(Some(PRODUCTPAGE)), &dir());
    assert_eq!(l.reporter, "waypoint");
    assert_eq!(l.source_workload, "productpage-v1");
    assert_eq!(l.source_principal, PRODUCTPAGE);
    assert_eq!(l.source_app, "productpage");
    assert_eq!(l.source_canonical_service, "productpage");
    assert_eq!(l.source_cluster, "Kubernetes");
    assert_eq!(l.destination_workload, "reviews-v1");
    assert_eq!(
        l.destination_principal,
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
    assert_eq!(l.destination_version, "v1");
    assert_eq!(l.destination_service, "reviews.default.svc.cluster.local");
    assert_eq!(l.destination_service_name, "reviews");
    assert_eq!(l.destination_service_namespace, "default");
    assert_eq!(
        l.destination_cluster, "Kubernetes",
        "Istio's default cluster id"
    );
    assert_eq!(l.response_code, "503");
    assert_eq!(l.response_flags, "UO");
    assert_eq!(l.grpc_response_status, "");
    assert_eq!(l.connection_security_policy, "mutual_tls");
}

#[test]
fn a_source_address_is_believed_only_with_the_matching_identity() {
    let other = "spiffe://cluster.local/ns/shop/sa/cart";
    let l = RequestLabels::new(&record(Some(other)), &dir());
    assert_eq!(l.source_workload, "unknown");
    assert_eq!(l.source_principal, other);
    assert_eq!(l.source_workload_namespace, "shop");
    // Plain listener: workload by address, no principal, no mTLS.
    let l = RequestLabels::new(&record(None), &dir());
    assert_eq!(l.source_workload, "productpage-v1");
    assert_eq!(l.source_principal, "unknown");
    assert_eq!(l.connection_security_policy, "none");
    // Nothing known: every field says unknown.
    let mut r = record(None);
    r.source.ip = None;
    r.service = None;
    r.workload = None;
    let l = RequestLabels::new(&r, &dir());
    for v in [
        &l.source_workload,
        &l.destination_workload,
        &l.destination_service,
        &l.destination_service_name,
    ] {
        assert_eq!(v, "unknown");
    }
}

#[test]
fn prometheus_text_has_istio_names_and_buckets() {
    let t = Telemetry::new(TelemetryOptions::default());
    t.record(&record(Some(PRODUCTPAGE)), &dir());
    t.record(&record(Some(PRODUCTPAGE)), &dir());
    let um = crate::upstream::UpstreamMetrics::default();
    um.ejections
        .get_or_create(&crate::upstream::UpstreamMetrics::cluster("c"))
        .inc();
    t.register_upstream(&um);
    let text = t.encode_metrics();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_string()
    };
    let total = line("istio_requests_total{");
    assert!(total.contains("reporter=\"waypoint\""), "{total}");
    assert!(
        total.contains("destination_workload=\"reviews-v1\""),
        "{total}"
    );
    assert!(total.contains("response_flags=\"UO\""), "{total}");
    assert!(total.ends_with(" 2"), "{total}");
    // 12 ms falls in the 25 ms bucket, not the 10 ms one.
    let b10 = line("istio_request_duration_milliseconds_bucket{le=\"10.0\"");
    let b25 = line("istio_request_duration_milliseconds_bucket{le=\"25.0\"");
    assert!(b10.ends_with(" 0") && b25.ends_with(" 2"), "{b10}\n{b25}");
    assert!(text.contains("istio_request_duration_milliseconds_bucket{le=\"3600000.0\""));
    assert!(text.contains("istio_response_bytes_bucket{le=\"1000000000.0\""));
    let rb = line("istio_response_bytes_bucket{le=\"100.0\"");
    assert!(rb.ends_with(" 2"), "{rb}");
    assert!(text.contains("istio_request_bytes_count{"));
    assert!(
        text.contains("mesh_waypoint_outlier_ejections_total{cluster=\"c\"} 1"),
        "{text}"
    );
}

#[test]
fn access_log_line_and_switch() {
    let t = Telemetry::new(TelemetryOptions {
        access_log: true,
        ..Default::default()
    });
    assert!(t.access_log_enabled());
    t.set_access_log(false);
    assert!(!t.access_log_enabled());
    let mut r = record(Some(PRODUCTPAGE));
    let mut h = http::HeaderMap::new();
    r.span = Some(trace::continue_trace(&mut h));
    let l = RequestLabels::new(&r, &dir());
    let v = access_log::line(&r, &l);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/reviews/0");
    assert_eq!(v["response_code"], 503);
    assert_eq!(v["response_flags"], "UO");
    assert_eq!(v["bytes_sent"], 81);
    assert_eq!(
        v["upstream_cluster"],
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(v["source_workload"], "productpage-v1");
    assert_eq!(v["trace_id"], r.span.as_ref().unwrap().trace_id_hex());
    assert_eq!(v["duration_ms"], 12.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_exports_the_span_of_a_sampled_request() {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    let (endpoint, mut rx) = super::otlp::tests::receiver().await;
    let t = Telemetry::new(TelemetryOptions {
        otlp_endpoint: Some(endpoint),
        workload_name: "waypoint-7f9c".into(),
        canonical_service: "waypoint".into(),
        node_id: "waypoint~10.1.0.9~waypoint-7f9c.default~default.svc.cluster.local".into(),
        namespace: "default".into(),
        export: Some(otlp::ExportOptions {
            queue: 8,
            batch: 1,
            flush_after: Duration::from_millis(10),
        }),
        ..Default::default()
    });
    let mut h = http::HeaderMap::new();
    h.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let mut r = record(Some(PRODUCTPAGE));
    r.span = Some(trace::continue_trace(&mut h));
    t.record(&r, &dir());
    // Unsampled: recorded in metrics, not exported.
    let mut unsampled = record(None);
    let mut h = http::HeaderMap::new();
    h.insert(
        "traceparent",
        "00-11111111111111111111111111111111-00f067aa0ba902b7-00"
            .parse()
            .unwrap(),
    );
    unsampled.span = Some(trace::continue_trace(&mut h));
    t.record(&unsampled, &dir());
    t.flush_spans();
    let req = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no export within 10s")
        .unwrap();
    let rs = &req.resource_spans[0];
    let service = rs
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.clone()?.value);
    assert_eq!(service, Some(V::StringValue("waypoint.default".into())));
    let spans: Vec<_> = rs.scope_spans.iter().flat_map(|s| &s.spans).collect();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = spans[0];
    assert_eq!(
        span.trace_id,
        trace::tests::unhex_vec("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(
        span.parent_span_id,
        trace::tests::unhex_vec("00f067aa0ba902b7")
    );
    assert_eq!(span.name, "reviews.default.svc.cluster.local:9080/*");
    assert_eq!(
        span.end_time_unix_nano - span.start_time_unix_nano,
        12_000_000
    );
    let node = span
        .attributes
        .iter()
        .find(|kv| kv.key == "node_id")
        .and_then(|kv| kv.value.clone()?.value);
    assert_eq!(
        node,
        Some(V::StringValue(
            "waypoint~10.1.0.9~waypoint-7f9c.default~default.svc.cluster.local".into()
        ))
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "the unsampled span was exported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_beyond_the_queue_are_dropped_and_counted() {
    // Nothing listens on port 9 and a batch waits 60 s: one span fits.
    let t = Telemetry::new(TelemetryOptions {
        otlp_endpoint: Some("http://127.0.0.1:9".into()),
        workload_name: "waypoint".into(),
        namespace: "default".into(),
        export: Some(otlp::ExportOptions {
            queue: 1,
            batch: 8,
            flush_after: Duration::from_secs(60),
        }),
        ..Default::default()
    });
    for _ in 0..3 {
        let mut r = record(Some(PRODUCTPAGE));
        r.span = Some(trace::continue_trace(&mut http::HeaderMap::new()));
        t.record(&r, &dir());
    }
    let text = t.encode_metrics();
    assert!(
        text.lines()
            .any(|l| l == "mesh_waypoint_spans_dropped_total 2"),
        "{text}"
    );
}

#[test]
fn access_log_goes_to_the_access_target_only_when_on() {
    use std::sync::Mutex;
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let t = Telemetry::new(TelemetryOptions::default());
    tracing::subscriber::with_default(subscriber, || {
        t.record(&record(Some(PRODUCTPAGE)), &dir());
        t.set_access_log(true);
        t.record(&record(Some(PRODUCTPAGE)), &dir());
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains(" access: "), "{out}");
    let json = &lines[0][lines[0].find('{').unwrap()..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["response_flags"], "UO");
    assert_eq!(v["source_principal"], PRODUCTPAGE);
}

#[test]
fn a_poisoned_registry_lock_still_serves_metrics() {
    let t = Telemetry::new(TelemetryOptions::default());
    std::thread::scope(|s| {
        let _ = s
            .spawn(|| {
                let _guard = t.registry.lock();
                panic!("poisoning the lock on purpose");
            })
            .join();
    });
    assert!(t.registry.is_poisoned());
    t.register_upstream(&UpstreamMetrics::default());
    assert!(t.encode_metrics().contains("# TYPE istio_requests"));
}

#[test]
fn a_gateway_reports_as_source() {
    let t = Telemetry::new(TelemetryOptions {
        reporter: labels::Reporter::Source,
        ..Default::default()
    });
    t.record(&record(Some(PRODUCTPAGE)), &dir());
    let text = t.encode_metrics();
    let total = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total{"))
        .unwrap_or_else(|| panic!("no istio_requests_total in\n{text}"));
    assert!(total.contains("reporter=\"source\""), "{total}");
}

#[test]
fn a_service_entry_host_is_named_by_its_cluster_metadata() {
    let host = "edition.cnn.com";
    let mut r = record(Some(PRODUCTPAGE));
    r.service = Some(Arc::from(host));
    r.workload = None;
    // The Address view has the entry under its ServiceEntry's name; the
    // clusters' metadata names it by the host, as Istio reports it.
    let d = Directory::build(
        [],
        [ServiceEntry::from_proto(&istio_workload::Service {
            name: "edition-cnn".into(),
            namespace: "egress".into(),
            hostname: host.into(),
            ..Default::default()
        })],
    );
    let before = RequestLabels::new(&r, &d);
    assert_eq!(before.destination_service_name, "edition-cnn");
    let d = d.with_cluster_services([crate::upstream::cluster::ServiceLabel {
        host: host.into(),
        name: host.into(),
        namespace: "egress".into(),
    }]);
    let l = RequestLabels::new(&r, &d);
    assert_eq!(l.destination_service, host);
    assert_eq!(l.destination_service_name, host);
    assert_eq!(l.destination_service_namespace, "egress");
    assert_eq!(l.destination_workload, "unknown");
}

fn tcp_record() -> tcp::TcpRecord {
    tcp::TcpRecord {
        service: Some(Arc::from("reviews.default.svc.cluster.local")),
        cluster: Some(Arc::from(
            "outbound|9080||reviews.default.svc.cluster.local",
        )),
        workload: Some(Arc::from("Kubernetes//Pod/default/reviews-v2-1")),
        upstream_host: Some("10.244.2.3:9080".parse().unwrap()),
        upstream_mtls: true,
        received: 11,
        sent: 13,
        ..tcp::TcpRecord::start(Some("192.0.2.7:40000".parse().unwrap()))
    }
}

#[test]
fn tcp_labels_name_the_gateway_as_source_and_the_endpoint_as_destination() {
    let t = Telemetry::new(TelemetryOptions {
        reporter: labels::Reporter::Source,
        // The Address view knows the proxy's own pod.
        workload_uid: "Kubernetes//Pod/default/productpage-1".into(),
        workload_name: "productpage-1".into(),
        namespace: "default".into(),
        ..Default::default()
    });
    let l = t.tcp_labels(&tcp_record(), &dir());
    assert_eq!(l.reporter, "source");
    assert_eq!(l.source_workload, "productpage-v1");
    assert_eq!(l.source_principal, PRODUCTPAGE);
    assert_eq!(l.destination_service_name, "reviews");
    assert_eq!(l.destination_workload_namespace, "default");
    assert_ne!(l.destination_principal, "unknown");
    assert_eq!(l.request_protocol, "tcp");
    assert_eq!(l.response_flags, "-");
    assert_eq!(l.connection_security_policy, "mutual_tls");

    // Unknown to the Address view: named by its flags; a plain hop.
    let t = Telemetry::new(TelemetryOptions {
        workload_uid: "Kubernetes//Pod/istio-system/gw-1".into(),
        workload_name: "gw-1".into(),
        namespace: "istio-system".into(),
        ..Default::default()
    });
    let r = tcp::TcpRecord {
        upstream_mtls: false,
        flag: Some("UF"),
        ..tcp_record()
    };
    let l = t.tcp_labels(&r, &dir());
    assert_eq!(
        (
            l.source_workload.as_str(),
            l.source_workload_namespace.as_str()
        ),
        ("gw-1", "istio-system")
    );
    assert_eq!(l.source_principal, "unknown");
    assert_eq!(l.response_flags, "UF");
    assert_eq!(l.connection_security_policy, "none");
}

#[test]
fn tcp_connections_count_at_open_and_close_with_bytes() {
    let t = Telemetry::new(TelemetryOptions::default());
    let r = tcp_record();
    let open = t.tcp_opened(&r, &dir(), Default::default());
    let text = t.encode_metrics();
    let value = |text: &str, metric: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{metric}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(
        value(&text, "istio_tcp_connections_opened_total").as_deref(),
        Some("1")
    );
    assert_eq!(value(&text, "istio_tcp_connections_closed_total"), None);
    t.tcp_closed(&r, &dir(), open);
    let text = t.encode_metrics();
    assert_eq!(
        value(&text, "istio_tcp_connections_closed_total").as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&text, "istio_tcp_received_bytes_total").as_deref(),
        Some("11")
    );
    assert_eq!(
        value(&text, "istio_tcp_sent_bytes_total").as_deref(),
        Some("13")
    );
    let line = tcp::line(&r, &t.tcp_labels(&r, &dir()));
    assert_eq!(line["downstream_remote_address"], "192.0.2.7:40000");
    assert_eq!(line["upstream_host"], "10.244.2.3:9080");
    assert_eq!(line["connection_security_policy"], "mutual_tls");
}

#[test]
fn series_are_resolved_once_per_directory() {
    let t = Telemetry::new(TelemetryOptions::default());
    let d = dir();
    t.record(&record(Some(PRODUCTPAGE)), &d);
    t.record(&record(Some(PRODUCTPAGE)), &d);
    assert_eq!(t.series.lock_unpoisoned().entries(), 1);
    let mut ok = record(Some(PRODUCTPAGE));
    ok.status = 200;
    t.record(&ok, &d);
    assert_eq!(t.series.lock_unpoisoned().entries(), 2);
    // Another Address view, without the destination workload: the labels
    // come from it, not from what was resolved before.
    let empty = Arc::new(Directory::default());
    t.record(&record(Some(PRODUCTPAGE)), &empty);
    assert_eq!(t.series.lock_unpoisoned().entries(), 1);
    let text = t.encode_metrics();
    let totals: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .collect();
    assert_eq!(totals.len(), 3, "{text}");
    let count = |l: &&str| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(totals.iter().map(count).sum::<u64>(), 4, "{text}");
    let unknown: Vec<&&str> = totals
        .iter()
        .filter(|l| l.contains("destination_workload=\"unknown\""))
        .collect();
    assert_eq!(unknown.len(), 1, "{text}");
    assert_eq!(count(unknown[0]), 1, "{text}");
}

#[test]
fn the_series_cache_is_bounded() {
    let t = Telemetry::new(TelemetryOptions::default());
    let d = dir();
    let mut r = record(Some(PRODUCTPAGE));
    for status in 0..=series::MAX_ENTRIES as u16 {
        r.status = status;
        t.record(&r, &d);
    }
    let len = t.series.lock_unpoisoned().entries();
    assert!((1..=series::MAX_ENTRIES).contains(&len), "{len}");
    let text = t.encode_metrics();
    let totals = text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .count();
    assert_eq!(totals, series::MAX_ENTRIES + 1, "every series is kept");
}
