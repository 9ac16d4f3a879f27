//! The vocabulary both data sources share: which Istio metric a number
//! comes from ([`Metric`]), the labels the topology needs ([`SeriesKey`])
//! and a per-second rate over the window ([`RateSample`]).

/// The Istio metrics the graph reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// `istio_requests_total`
    Requests,
    /// `istio_request_duration_milliseconds_bucket`
    DurationBucket,
    /// `istio_tcp_sent_bytes_total`
    TcpSent,
    /// `istio_tcp_received_bytes_total`
    TcpReceived,
    /// `istio_tcp_connections_opened_total`
    TcpOpened,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Requests,
        Metric::DurationBucket,
        Metric::TcpSent,
        Metric::TcpReceived,
        Metric::TcpOpened,
    ];

    /// The series name in the text exposition and in PromQL.
    pub fn series_name(self) -> &'static str {
        match self {
            Metric::Requests => "istio_requests_total",
            Metric::DurationBucket => "istio_request_duration_milliseconds_bucket",
            Metric::TcpSent => "istio_tcp_sent_bytes_total",
            Metric::TcpReceived => "istio_tcp_received_bytes_total",
            Metric::TcpOpened => "istio_tcp_connections_opened_total",
        }
    }

    pub fn from_series_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.series_name() == name)
    }

    /// True for the HTTP/gRPC request metrics.
    pub fn is_request(self) -> bool {
        matches!(self, Metric::Requests | Metric::DurationBucket)
    }
}

/// Who reported a series (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reporter {
    Source,
    Destination,
    Waypoint,
}

impl Reporter {
    pub fn parse(s: &str) -> Option<Reporter> {
        match s {
            "source" => Some(Reporter::Source),
            "destination" => Some(Reporter::Destination),
            "waypoint" => Some(Reporter::Waypoint),
            _ => None,
        }
    }
}

/// The labels the graph is built from; every other label is summed away.
/// Values are as exported (`unknown` for unknown).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SeriesKey {
    pub reporter: Option<Reporter>,
    pub source_workload: String,
    pub source_workload_namespace: String,
    pub source_principal: String,
    pub destination_service: String,
    pub destination_service_name: String,
    pub destination_service_namespace: String,
    pub destination_workload: String,
    pub destination_workload_namespace: String,
    pub destination_version: String,
    pub request_protocol: String,
    pub connection_security_policy: String,
    /// HTTP status (requests only).
    pub response_code: String,
    /// gRPC status (requests only; empty when not gRPC).
    pub grpc_response_status: String,
}

impl SeriesKey {
    /// The label names kept, as PromQL's `by (...)` lists them (without
    /// `le`, which histogram queries add).
    pub const LABELS: [&'static str; 14] = [
        "reporter",
        "source_workload",
        "source_workload_namespace",
        "source_principal",
        "destination_service",
        "destination_service_name",
        "destination_service_namespace",
        "destination_workload",
        "destination_workload_namespace",
        "destination_version",
        "request_protocol",
        "connection_security_policy",
        "response_code",
        "grpc_response_status",
    ];

    /// Builds the key from `(name, value)` label pairs; labels not kept
    /// are ignored, missing ones stay empty.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut k = SeriesKey::default();
        for (name, value) in labels {
            let slot = match name {
                "reporter" => {
                    k.reporter = Reporter::parse(value);
                    continue;
                }
                "source_workload" => &mut k.source_workload,
                "source_workload_namespace" => &mut k.source_workload_namespace,
                "source_principal" => &mut k.source_principal,
                "destination_service" => &mut k.destination_service,
                "destination_service_name" => &mut k.destination_service_name,
                "destination_service_namespace" => &mut k.destination_service_namespace,
                "destination_workload" => &mut k.destination_workload,
                "destination_workload_namespace" => &mut k.destination_workload_namespace,
                "destination_version" => &mut k.destination_version,
                "request_protocol" => &mut k.request_protocol,
                "connection_security_policy" => &mut k.connection_security_policy,
                "response_code" => &mut k.response_code,
                "grpc_response_status" => &mut k.grpc_response_status,
                _ => continue,
            };
            *slot = value.to_string();
        }
        k
    }

    /// A failed request: HTTP 5xx, or a gRPC status other than OK.
    pub fn is_error(&self) -> bool {
        let grpc_failed = !self.grpc_response_status.is_empty() && self.grpc_response_status != "0";
        self.response_code.starts_with('5') || grpc_failed
    }
}

/// One series' per-second increase over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSample {
    pub metric: Metric,
    pub key: SeriesKey,
    /// The bucket's upper bound (`le`) for [`Metric::DurationBucket`].
    pub le: Option<f64>,
    /// Per second.
    pub rate: f64,
}

/// Parses an `le` label value (`+Inf` included).
pub fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_5xx_or_grpc_failures() {
        let k = |code: &str, grpc: &str| SeriesKey {
            response_code: code.into(),
            grpc_response_status: grpc.into(),
            ..SeriesKey::default()
        };
        assert!(k("503", "").is_error());
        assert!(!k("404", "").is_error());
        assert!(!k("200", "0").is_error());
        assert!(k("200", "14").is_error());
    }

    #[test]
    fn key_keeps_only_topology_labels() {
        let k = SeriesKey::from_labels([
            ("reporter", "waypoint"),
            ("source_workload", "sleep"),
            ("source_app", "sleep"),
            ("destination_version", "v2"),
        ]);
        assert_eq!(k.reporter, Some(Reporter::Waypoint));
        assert_eq!(k.source_workload, "sleep");
        assert_eq!(k.destination_version, "v2");
        assert_eq!(parse_le("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_le("2.5"), Some(2.5));
    }
}
