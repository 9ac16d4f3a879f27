//! Trace context propagation: the proxy continues the caller's trace
//! (W3C `traceparent`/`tracestate` through OpenTelemetry's
//! `TraceContextPropagator`, else B3 single `b3`, else B3 multi `x-b3-*`)
//! or starts one, gives its own hop a new span id, and rewrites the
//! headers going upstream so the next hop's parent is the proxy's span.
//!
//! New traces are sampled; an incoming sampling decision is kept. A header
//! that does not parse is ignored (the next format is tried, then a new
//! trace starts).
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    propagation::{Extractor, TextMapPropagator},
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
    Context as OtelContext,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The proxy's span of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span, when the trace was continued.
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
    /// The caller's W3C `tracestate` (vendor entries), passed on as is;
    /// empty when there was none.
    pub trace_state: String,
    pub start: SystemTime,
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes` into `out` (twice as long), without `fmt`:
/// ids are written several times per request.
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, o) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        o[0] = DIGITS[usize::from(b >> 4)];
        o[1] = DIGITS[usize::from(b & 0xf)];
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut buf = [0u8; 32];
    let out = &mut buf[..bytes.len() * 2];
    hex_into(bytes, out);
    String::from_utf8_lossy(out).into_owned()
}

/// An id as a header value: hex in a stack buffer, copied once.
fn hex_value(bytes: &[u8]) -> Option<HeaderValue> {
    let mut buf = [0u8; 32];
    let out = &mut buf[..bytes.len() * 2];
    hex_into(bytes, out);
    HeaderValue::from_bytes(out).ok()
}

/// `00-<trace id>-<span id>-<flags>`.
const TRACEPARENT_LEN: usize = 55;

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// 64-bit (16 hex) B3 trace ids are the low half of a 128-bit id.
fn b3_trace_id(s: &str) -> Option<[u8; 16]> {
    match s.len() {
        32 => unhex::<16>(s),
        16 => {
            let low = unhex::<8>(s)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            Some(id)
        }
        _ => None,
    }
    .filter(|id| id.iter().any(|b| *b != 0))
}

fn span_id(s: &str) -> Option<[u8; 8]> {
    unhex::<8>(s).filter(|id| id.iter().any(|b| *b != 0))
}

impl Span {
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    pub fn parent_span_id_hex(&self) -> Option<String> {
        self.parent_span_id.map(|p| hex(&p))
    }

    /// `traceparent` for the next hop (this span as its parent).
    pub fn traceparent(&self) -> String {
        String::from_utf8_lossy(&self.traceparent_bytes()).into_owned()
    }

    /// [`Span::traceparent`] in a stack buffer (what OpenTelemetry's
    /// `TraceContextPropagator` writes: version 00, lower-case hex, only
    /// the sampled flag).
    fn traceparent_bytes(&self) -> [u8; TRACEPARENT_LEN] {
        let mut b = [b'-'; TRACEPARENT_LEN];
        b[..2].copy_from_slice(b"00");
        hex_into(&self.trace_id, &mut b[3..35]);
        hex_into(&self.span_id, &mut b[36..52]);
        b[53] = b'0';
        b[54] = if self.sampled { b'1' } else { b'0' };
        b
    }

    /// The single `b3` header: `<trace>-<span>-<sampled>[-<parent>]`.
    fn b3_single(&self) -> Option<HeaderValue> {
        let mut b = [b'-'; 32 + 1 + 16 + 1 + 1 + 1 + 16];
        hex_into(&self.trace_id, &mut b[..32]);
        hex_into(&self.span_id, &mut b[33..49]);
        b[50] = if self.sampled { b'1' } else { b'0' };
        let len = match self.parent_span_id {
            Some(p) => {
                hex_into(&p, &mut b[52..68]);
                68
            }
            None => 51,
        };
        HeaderValue::from_bytes(&b[..len]).ok()
    }

    /// The OpenTelemetry context of this span (`remote`: it came from
    /// another process) or of its parent.
    fn context_of(&self, span_id: [u8; 8], remote: bool) -> SpanContext {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state = self.trace_state.parse::<TraceState>().unwrap_or_default();
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(span_id),
            flags,
            remote,
            state,
        )
    }

    /// The caller's span as a remote parent context, when there is one.
    pub fn parent_context(&self) -> OtelContext {
        match self.parent_span_id {
            Some(p) => OtelContext::new().with_remote_span_context(self.context_of(p, true)),
            None => OtelContext::new(),
        }
    }
}

struct ReadHeaders<'a>(&'a HeaderMap);

impl Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The incoming context: (trace id, parent span id, sampled, tracestate).
type Context = ([u8; 16], [u8; 8], bool, String);

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// W3C trace context through OpenTelemetry's propagator (it rejects
/// version `ff`, all-zero ids and malformed fields).
fn from_traceparent(h: &HeaderMap) -> Option<Context> {
    let cx = TraceContextPropagator::new().extract(&ReadHeaders(h));
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some((
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.is_sampled(),
        sc.trace_state().header(),
    ))
}

fn b3_sampled(v: &str) -> bool {
    matches!(v, "1" | "d" | "true")
}

fn from_b3_single(h: &HeaderMap) -> Option<Context> {
    let v = header(h, "b3")?;
    let mut parts = v.split('-');
    let trace = b3_trace_id(parts.next()?)?;
    let span = span_id(parts.next()?)?;
    let sampled = parts.next().is_none_or(b3_sampled);
    Some((trace, span, sampled, String::new()))
}

fn from_b3_multi(h: &HeaderMap) -> Option<Context> {
    let trace = b3_trace_id(header(h, "x-b3-traceid")?)?;
    let span = span_id(header(h, "x-b3-spanid")?)?;
    let sampled =
        header(h, "x-b3-flags") == Some("1") || header(h, "x-b3-sampled").is_none_or(b3_sampled);
    Some((trace, span, sampled, String::new()))
}

fn set(h: &mut HeaderMap, name: &'static str, value: Option<HeaderValue>) {
    if let Some(v) = value {
        h.insert(name, v);
    }
}

/// Continues or starts a trace: rewrites `traceparent` (new span id,
/// parent = incoming) and `tracestate` (kept) and the B3 headers (the single `b3` header when the
/// caller used it, else `x-b3-*`) on the request going upstream; the
/// returned span goes into the request's record.
pub fn continue_trace(headers: &mut HeaderMap) -> Span {
    let single = headers.contains_key("b3");
    // OpenTelemetry's propagator parses a `traceparent` that is there.
    let incoming = headers
        .contains_key("traceparent")
        .then(|| from_traceparent(headers))
        .flatten()
        .or_else(|| from_b3_single(headers))
        .or_else(|| from_b3_multi(headers));
    // `b3: 0` (or `x-b3-sampled: 0` alone) carries only "do not sample".
    let deny = header(headers, "b3") == Some("0") || header(headers, "x-b3-sampled") == Some("0");
    let (trace_id, parent, sampled, trace_state) = match incoming {
        Some((t, p, s, state)) => (t, Some(p), s, state),
        None => (new_trace_id(), None, !deny, String::new()),
    };
    let mut new_id: [u8; 8] = rand::random();
    if new_id == [0; 8] {
        new_id[7] = 1;
    }
    let span = Span {
        trace_id,
        span_id: new_id,
        parent_span_id: parent,
        sampled,
        trace_state,
        start: SystemTime::now(),
    };
    set(
        headers,
        "traceparent",
        HeaderValue::from_bytes(&span.traceparent_bytes()).ok(),
    );
    // The caller's state as the propagator re-serialised it; none: no header.
    headers.remove("tracestate");
    if !span.trace_state.is_empty() {
        set(
            headers,
            "tracestate",
            HeaderValue::from_str(&span.trace_state).ok(),
        );
    }
    let flag = HeaderValue::from_static(if sampled { "1" } else { "0" });
    if single {
        set(headers, "b3", span.b3_single());
    } else {
        set(headers, "x-b3-traceid", hex_value(&span.trace_id));
        set(headers, "x-b3-spanid", hex_value(&span.span_id));
        match span.parent_span_id {
            Some(p) => set(headers, "x-b3-parentspanid", hex_value(&p)),
            None => {
                headers.remove("x-b3-parentspanid");
            }
        }
        headers.insert("x-b3-sampled", flag);
    }
    span
}

fn new_trace_id() -> [u8; 16] {
    let mut id: [u8; 16] = rand::random();
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes of a hex id, for comparing with OTLP's byte fields.
    pub(crate) fn unhex_vec(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn continues_w3c_with_a_new_span() {
        let mut h = headers(&[("traceparent", &format!("00-{TRACE}-{PARENT}-01"))]);
        let s = continue_trace(&mut h);
        assert_eq!(s.trace_id_hex(), TRACE);
        assert_eq!(s.parent_span_id_hex().as_deref(), Some(PARENT));
        assert_ne!(s.span_id_hex(), PARENT);
        assert!(s.sampled);
        assert_eq!(
            h["traceparent"],
            format!("00-{TRACE}-{}-01", s.span_id_hex())
        );
        // B3 multi headers are written for B3-only applications.
        assert_eq!(h["x-b3-traceid"], TRACE);
        assert_eq!(h["x-b3-spanid"], s.span_id_hex().as_str());
        assert_eq!(h["x-b3-parentspanid"], PARENT);
    }

    #[test]
    fn keeps_an_unsampled_decision() {
        let mut h = headers(&[("traceparent", &format!("00-{TRACE}-{PARENT}-00"))]);
        let s = continue_trace(&mut h);
        assert!(!s.sampled);
        assert!(h["traceparent"].to_str().unwrap().ends_with("-00"));
        assert_eq!(h["x-b3-sampled"], "0");
    }

    #[test]
    fn continues_b3_multi_with_64_bit_ids() {
        let mut h = headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", PARENT),
            ("x-b3-sampled", "1"),
        ]);
        let s = continue_trace(&mut h);
        assert_eq!(s.trace_id_hex(), "0000000000000000a3ce929d0e0e4736");
        assert_eq!(s.parent_span_id, unhex::<8>(PARENT));
        assert_eq!(h["x-b3-parentspanid"], PARENT);
        assert_eq!(h["x-b3-spanid"], s.span_id_hex().as_str());
    }

    #[test]
    fn continues_b3_single_and_answers_in_kind() {
        let mut h = headers(&[("b3", &format!("{TRACE}-{PARENT}-1"))]);
        let s = continue_trace(&mut h);
        assert_eq!(s.trace_id_hex(), TRACE);
        assert_eq!(h["b3"], format!("{TRACE}-{}-1-{PARENT}", s.span_id_hex()));
        assert!(h.get("x-b3-traceid").is_none());
    }

    #[test]
    fn a_bare_b3_deny_starts_an_unsampled_trace() {
        let mut h = headers(&[("b3", "0")]);
        let s = continue_trace(&mut h);
        assert!(!s.sampled);
        assert_eq!(s.parent_span_id, None);
        assert!(h["b3"].to_str().unwrap().ends_with("-0"), "{:?}", h["b3"]);
    }

    #[test]
    fn invalid_context_starts_a_new_trace() {
        for bad in [
            format!("00-{}-{PARENT}-01", "0".repeat(32)),
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
            format!("ff-{TRACE}-{PARENT}-01"),
            "garbage".to_string(),
        ] {
            let mut h = headers(&[("traceparent", &bad)]);
            let s = continue_trace(&mut h);
            assert_eq!(s.parent_span_id, None, "{bad}");
            assert_ne!(s.trace_id_hex(), TRACE);
            assert!(s.sampled);
            assert!(h.get("x-b3-parentspanid").is_none());
        }
    }

    #[test]
    fn keeps_tracestate_for_the_next_hop() {
        let mut h = headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ]);
        let s = continue_trace(&mut h);
        assert_eq!(s.trace_state, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        assert_eq!(h["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        let parent = s.parent_context();
        let sc = parent.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.span_id().to_bytes(), unhex::<8>(PARENT).unwrap());
    }

    #[test]
    fn w3c_wins_over_b3_when_both_are_sent() {
        let other = "1111111111111111aaaaaaaaaaaaaaaa";
        let mut h = headers(&[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            ("b3", &format!("{other}-{PARENT}-1")),
        ]);
        let s = continue_trace(&mut h);
        assert_eq!(s.trace_id_hex(), TRACE);
        // The single header is answered in kind, with the same ids.
        assert_eq!(h["b3"], format!("{TRACE}-{}-1-{PARENT}", s.span_id_hex()));
    }

    #[test]
    fn invalid_w3c_falls_back_to_b3() {
        let mut h = headers(&[
            ("traceparent", "00-not-hex-01"),
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", PARENT),
        ]);
        let s = continue_trace(&mut h);
        assert_eq!(s.trace_id_hex(), TRACE);
        assert_eq!(s.parent_span_id_hex().as_deref(), Some(PARENT));
        // The outgoing traceparent is rewritten with the continued trace.
        assert_eq!(
            h["traceparent"],
            format!("00-{TRACE}-{}-01", s.span_id_hex())
        );
    }

    #[test]
    fn invalid_b3_starts_a_new_trace() {
        for (name, bad) in [
            ("b3", format!("{}-{PARENT}-1", "0".repeat(32))),
            ("b3", format!("{TRACE}-xyz-1")),
            ("b3", format!("{}-{PARENT}-1", &TRACE[..20])),
            ("x-b3-traceid", "zz".repeat(16)),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(&bad).unwrap());
            if name == "x-b3-traceid" {
                h.insert("x-b3-spanid", HeaderValue::from_static(PARENT));
            }
            let s = continue_trace(&mut h);
            assert_eq!(s.parent_span_id, None, "{name}: {bad}");
            assert_ne!(s.trace_id_hex(), TRACE, "{name}: {bad}");
            assert!(s.sampled, "{name}: {bad}");
            let tp = h["traceparent"].to_str().unwrap().to_string();
            assert_eq!(tp, s.traceparent(), "{name}: {bad}");
        }
    }

    #[test]
    fn a_new_trace_writes_w3c_and_b3_multi() {
        let mut h = HeaderMap::new();
        let s = continue_trace(&mut h);
        assert_eq!(s.parent_span_id, None);
        assert_eq!(h["traceparent"], s.traceparent());
        assert!(h.get("tracestate").is_none());
        assert_eq!(h["x-b3-traceid"], s.trace_id_hex().as_str());
        assert_eq!(h["x-b3-sampled"], "1");
        assert!(h.get("x-b3-parentspanid").is_none());
    }

    #[test]
    fn hex_matches_fmt() {
        for _ in 0..100 {
            let id: [u8; 16] = rand::random();
            let want: String = id.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex(&id), want);
            assert_eq!(hex_value(&id).unwrap(), want.as_str());
            assert_eq!(hex(&id[..8]), want[..16]);
        }
    }

    #[test]
    fn traceparent_is_what_opentelemetrys_propagator_writes() {
        use std::collections::HashMap;
        for sampled in [true, false] {
            let span = Span {
                trace_id: rand::random(),
                span_id: rand::random(),
                parent_span_id: Some(rand::random()),
                sampled,
                trace_state: String::new(),
                start: SystemTime::now(),
            };
            let own =
                OtelContext::new().with_remote_span_context(span.context_of(span.span_id, false));
            let mut want: HashMap<String, String> = HashMap::new();
            TraceContextPropagator::new().inject_context(&own, &mut want);
            assert_eq!(span.traceparent(), want["traceparent"]);
            let b3 = format!(
                "{}-{}-{}-{}",
                span.trace_id_hex(),
                span.span_id_hex(),
                if sampled { "1" } else { "0" },
                span.parent_span_id_hex().unwrap()
            );
            assert_eq!(span.b3_single().unwrap(), b3.as_str());
        }
    }
}
