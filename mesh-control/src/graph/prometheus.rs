//! The Prometheus data source (`--prometheus-url`): instant PromQL queries
//! over the HTTP API (`/api/v1/query`), one per metric, each
//! `sum by (<the topology's labels>) (rate(<metric>[<window>s]))`.
//! Latency quantiles are computed from the bucket rates after the edges
//! are grouped ([`super::quantile`], the interpolation
//! `histogram_quantile` uses), so both sources share one code path.
use std::{fmt, str::FromStr, time::Duration};

use serde::Deserialize;

use super::{
    http,
    series::{parse_le, Metric, RateSample, SeriesKey},
};

/// Deadline of one query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read per query answer.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// `--prometheus-url`: `http://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusUrl {
    /// `host:port` (port 80 when not given).
    pub authority: String,
    /// Path before `/api/v1/query`, without a trailing `/`.
    pub prefix: String,
}

/// A `--prometheus-url` that is not `http://host[:port][/prefix]`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("--prometheus-url {url:?}: {reason}")]
pub struct BadUrl {
    pub url: String,
    pub reason: &'static str,
}

impl FromStr for PrometheusUrl {
    type Err = BadUrl;

    fn from_str(s: &str) -> Result<Self, BadUrl> {
        let bad = |reason| BadUrl {
            url: s.to_string(),
            reason,
        };
        let uri: hyper::Uri = s.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(PrometheusUrl {
            authority: format!("{host}:{port}"),
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }
}

impl fmt::Display for PrometheusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.prefix)
    }
}

/// The PromQL query for `metric` over `window`.
pub fn promql(metric: Metric, window: Duration) -> String {
    let mut by = SeriesKey::LABELS.join(", ");
    if metric == Metric::DurationBucket {
        by.push_str(", le");
    }
    format!(
        "sum by ({by}) (rate({}[{}s]))",
        metric.series_name(),
        window.as_secs()
    )
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<AnswerData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct AnswerData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<VectorSample>,
}

#[derive(Deserialize)]
struct VectorSample {
    metric: std::collections::BTreeMap<String, String>,
    /// `[unix time, "value"]`.
    value: (f64, String),
}

/// Why a query gave no samples.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Fetch(#[from] http::FetchError),
    #[error("answer is not Prometheus JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Prometheus says: {0}")]
    Failed(String),
    #[error("result type {0}, expected vector")]
    NotVector(String),
}

/// Turns a `/api/v1/query` answer for `metric` into rate samples.
pub fn parse_answer(metric: Metric, body: &[u8]) -> Result<Vec<RateSample>, QueryError> {
    let answer: Answer = serde_json::from_slice(body)?;
    if answer.status != "success" {
        return Err(QueryError::Failed(answer.error.unwrap_or(answer.status)));
    }
    let Some(data) = answer.data else {
        return Ok(vec![]);
    };
    if data.result_type != "vector" {
        return Err(QueryError::NotVector(data.result_type));
    }
    Ok(data
        .result
        .into_iter()
        .filter_map(|s| {
            let rate: f64 = s.value.1.parse().ok()?;
            if !rate.is_finite() {
                return None;
            }
            let le = match metric {
                Metric::DurationBucket => Some(parse_le(s.metric.get("le")?)?),
                _ => None,
            };
            let key =
                SeriesKey::from_labels(s.metric.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            Some(RateSample {
                metric,
                key,
                le,
                rate,
            })
        })
        .collect())
}

/// Runs one query per metric; returns what answered and one message per
/// query that failed.
pub async fn rates(url: &PrometheusUrl, window: Duration) -> (Vec<RateSample>, Vec<String>) {
    let queries = Metric::ALL.into_iter().map(|metric| async move {
        let path = format!(
            "{}/api/v1/query?query={}",
            url.prefix,
            encode(&promql(metric, window))
        );
        let result = match http::get(&url.authority, &path, QUERY_TIMEOUT, MAX_BODY).await {
            Ok(body) => parse_answer(metric, &body),
            Err(e) => Err(e.into()),
        };
        (metric, result)
    });
    let mut samples = vec![];
    let mut errors = vec![];
    for (metric, result) in futures::future::join_all(queries).await {
        match result {
            Ok(s) => samples.extend(s),
            Err(e) => errors.push(format!(
                "prometheus {url} query {}: {e}",
                metric.series_name()
            )),
        }
    }
    (samples, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u: PrometheusUrl = "http://127.0.0.1:9090".parse().unwrap();
        assert_eq!(u.authority, "127.0.0.1:9090");
        assert_eq!(u.prefix, "");
        let u: PrometheusUrl = "http://prom.monitoring/prom/".parse().unwrap();
        assert_eq!(u.authority, "prom.monitoring:80");
        assert_eq!(u.prefix, "/prom");
        assert_eq!(u.to_string(), "http://prom.monitoring:80/prom");
        let e = "https://x:9090".parse::<PrometheusUrl>().unwrap_err();
        assert!(e.to_string().contains("only http://"), "{e}");
        assert!("9090".parse::<PrometheusUrl>().is_err());
    }

    #[test]
    fn query_groups_by_topology_labels() {
        let q = promql(Metric::DurationBucket, Duration::from_secs(60));
        assert!(q.starts_with("sum by (reporter, source_workload,"), "{q}");
        assert!(
            q.ends_with(", le) (rate(istio_request_duration_milliseconds_bucket[60s]))"),
            "{q}"
        );
        assert_eq!(encode("a b{c=\"d\"}[1s]"), "a%20b%7Bc%3D%22d%22%7D%5B1s%5D");
    }

    #[test]
    fn parses_vector_answers() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"reporter":"source","source_workload":"sleep","destination_service_name":"productpage","le":"+Inf"},"value":[1700000000.1,"2.5"]},
            {"metric":{"reporter":"source"},"value":[1700000000.1,"NaN"]}
        ]}}"#;
        let s = parse_answer(Metric::DurationBucket, body).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].rate, 2.5);
        assert_eq!(s[0].le, Some(f64::INFINITY));
        assert_eq!(s[0].key.source_workload, "sleep");
        let err = parse_answer(
            Metric::Requests,
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap_err();
        assert!(
            matches!(err, QueryError::Failed(ref m) if m == "parse error"),
            "{err}"
        );
    }
}
