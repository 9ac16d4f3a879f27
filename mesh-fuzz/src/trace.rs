//! The waypoint's trace header parsing (W3C `traceparent`, B3 single and
//! multi): whatever the caller sent, the headers it writes upstream must
//! carry its span so the next hop continues the same trace.
use mesh_waypoint::telemetry::trace::continue_trace;

use crate::lines;

/// Input: header lines (`traceparent: …`, `b3: …`, `x-b3-traceid: …`).
pub fn trace_headers(data: &[u8]) {
    let mut headers = lines::headers(&lines::split(data));
    let span = continue_trace(&mut headers);
    assert_ne!(span.span_id, [0; 8], "span id must not be zero");
    assert_ne!(span.trace_id, [0; 16], "trace id must not be zero");
    assert_eq!(
        headers.get("traceparent").and_then(|v| v.to_str().ok()),
        Some(span.traceparent().as_str())
    );
    // The next hop reads what we wrote: same trace, our span as parent.
    let next = continue_trace(&mut headers);
    assert_eq!(next.trace_id, span.trace_id);
    assert_eq!(next.parent_span_id, Some(span.span_id));
    assert_eq!(next.sampled, span.sampled);
}
