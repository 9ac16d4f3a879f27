//! The access log: one JSON line per finished connection, emitted as a
//! `tracing` event with target `access` and written by its own JSON layer
//! (see `logging.rs`), so it stays machine-readable when the agent's own
//! log is text.
//!
//! It is switched like any log target: `--access-log=false` (or
//! `access_log = false` in the config file) starts the filter with
//! `access=off`; `POST /logging?access=off|info` flips it at runtime. A
//! disabled event costs one cached callsite check.
//!
//! Line shape (fields flattened next to `timestamp`, `level`, `target`):
//!
//! ```json
//! {"timestamp":"…","level":"INFO","target":"access","message":"connection complete",
//!  "start_time":"2026-11-23T10:00:00.123Z","duration_ms":12,"direction":"outbound",
//!  "reporter":"source","route":"hbone","src_addr":"10.244.1.2:40000",
//!  "dst_addr":"10.244.2.3:9080","original_dst":"10.96.0.10:9080",
//!  "src_identity":"spiffe://…","dst_identity":"spiffe://…","src_workload":"productpage-v1",
//!  "dst_workload":"reviews-v1","service":"reviews.default.svc.cluster.local",
//!  "bytes_sent":120,"bytes_received":5000,"response_flags":"-","error":""}
//! ```
//! `bytes_sent` is source → destination; `dst_addr` is the endpoint the
//! agent reached (`""` if none); identities are `""` when a side has none.
use tracing_subscriber::{
    filter::{filter_fn, Filtered},
    fmt::{self, format::JsonFields, MakeWriter},
    Layer,
};

use crate::{metrics::labels::Reporter, state::connections::ConnectionRecord};

/// The `tracing` target of access log events.
pub const TARGET: &str = "access";

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a unix time in ms (civil-from-days,
/// proleptic Gregorian; avoids a date crate for one format).
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let (secs, ms) = (unix_ms / 1000, unix_ms % 1000);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Logs `record` (a finished connection) if the `access` target is enabled.
pub fn emit(record: &ConnectionRecord, reporters: &[Reporter]) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let reporter = reporters
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let dst_addr = record.upstream.map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        target: TARGET,
        start_time = %rfc3339_ms(record.opened_at_ms),
        duration_ms = record.duration_ms,
        direction = record.direction.as_str(),
        reporter = %reporter,
        route = record.route.as_str(),
        src_addr = %record.source,
        dst_addr = %dst_addr,
        original_dst = %record.original_destination,
        src_identity = %record.source_identity,
        dst_identity = %record.destination_identity,
        src_workload = %record.source_workload,
        dst_workload = %record.destination_workload,
        service = %record.service,
        bytes_sent = record.bytes_sent,
        bytes_received = record.bytes_received,
        response_flags = record.response_flags,
        error = %record.error,
        "connection complete"
    );
}

/// The layer that writes access events, and only those, as JSON lines.
pub type AccessLayer<S, W> = Filtered<
    fmt::Layer<S, JsonFields, fmt::format::Format<fmt::format::Json>, W>,
    tracing_subscriber::filter::FilterFn,
    S,
>;

pub fn layer<S, W>(writer: W) -> AccessLayer<S, W>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(filter_fn(|meta| meta.target() == TARGET))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::{layer::SubscriberExt as _, EnvFilter};

    use super::*;
    use crate::state::connections::ConnectionStats;

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(pub Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }
    impl Buffer {
        pub(crate) fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }
    }

    fn finish_one(stats: &ConnectionStats) {
        let mut open = stats.open(
            "10.244.1.2:40000".parse().unwrap(),
            "10.96.0.10:80".parse().unwrap(),
        );
        open.route = crate::state::outcome::Carried::Hbone;
        open.upstream = Some("10.244.2.2:8080".parse().unwrap());
        open.source_identity = "spiffe://cluster.local/ns/default/sa/a".into();
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = crate::state::outcome::ConnError::Connect(refused);
        stats.finish(open, 120, 5000, Some(error));
    }

    #[test]
    fn one_json_line_per_connection_with_every_field() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(layer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not an access event");
            finish_one(&ConnectionStats::default());
        });
        let lines = buffer.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["target"], "access");
        assert_eq!(line["direction"], "outbound");
        assert_eq!(line["reporter"], "source");
        assert_eq!(line["src_addr"], "10.244.1.2:40000");
        assert_eq!(line["dst_addr"], "10.244.2.2:8080");
        assert_eq!(line["original_dst"], "10.96.0.10:80");
        assert_eq!(
            line["src_identity"],
            "spiffe://cluster.local/ns/default/sa/a"
        );
        assert_eq!(line["dst_workload"], "unknown");
        assert_eq!(line["service"], "unknown");
        assert_eq!(line["bytes_sent"], 120);
        assert_eq!(line["bytes_received"], 5000);
        assert_eq!(line["response_flags"], "UF");
        assert_eq!(line["error"], "connect: refused");
        assert!(line["duration_ms"].is_u64());
        assert!(line["start_time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn access_off_in_the_filter_silences_it() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("info,access=off"))
            .with(layer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            finish_one(&ConnectionStats::default());
        });
        assert!(buffer.lines().is_empty());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }
}
