//! The access log: one JSON object per request on the `access` tracing
//! target, switched on and off at run time.
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{labels::RequestLabels, record::RequestRecord};

/// The log line of one request (Envoy's access log fields, JSON).
pub fn line(r: &RequestRecord, l: &RequestLabels) -> Value {
    let end = SystemTime::now();
    let start = end.checked_sub(r.duration).unwrap_or(end);
    json!({
        "start_time_ms": start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        "method": r.method.as_str(),
        "path": r.path,
        "protocol": r.protocol,
        "response_code": r.status,
        "grpc_status": r.grpc_status,
        "response_flags": l.response_flags,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
        "bytes_received": r.request_bytes,
        "bytes_sent": r.response_bytes,
        "upstream_cluster": r.cluster.as_deref(),
        "upstream_workload": r.workload.as_deref(),
        "downstream_peer_ip": r.source.ip.map(|ip| ip.to_string()),
        "downstream_peer_principal": r.source.principal.as_deref(),
        "source_principal": l.source_principal,
        "source_workload": l.source_workload,
        "source_namespace": l.source_workload_namespace,
        "destination_service": l.destination_service,
        "destination_workload": l.destination_workload,
        "destination_namespace": l.destination_workload_namespace,
        "trace_id": r.span.as_ref().map(|s| s.trace_id_hex()),
    })
}
