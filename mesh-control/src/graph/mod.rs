//! The service graph: who talks to whom in the mesh, how much, how fast,
//! how often it fails, whether over mTLS, and how a canary's configured
//! split compares with what is observed. Served on the admin endpoint
//! (docs/contracts/graph-data.md): `GET /graph` (the page, whose assets
//! are embedded) and `GET /graph/data` (JSON).
//!
//! The numbers come from one of two [`Source`]s: a Prometheus server
//! (`--prometheus-url`, [`prometheus`]) or, by default, the control plane
//! scraping the proxies itself ([`scrape`]). Both yield per-second rates
//! of Istio's standard series ([`series`]); [`build`] places them on the
//! topology the control plane's model describes.
pub mod build;
pub mod exposition;
pub mod http;
pub mod prometheus;
pub mod quantile;
pub mod scrape;
pub mod series;
pub mod weights;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tokio::sync::watch;

pub use prometheus::PrometheusUrl;
pub use scrape::Scraper;

use crate::{model::MeshState, serve::ConnectedProxies};

/// The page, its script and its style sheet.
pub const PAGE_HTML: &str = include_str!("assets/graph.html");
pub const PAGE_JS: &str = include_str!("assets/graph.js");
pub const PAGE_CSS: &str = include_str!("assets/graph.css");

/// `window` when the query names none, and its bounds, in seconds.
pub const DEFAULT_WINDOW: u64 = 60;
pub const MIN_WINDOW: u64 = 10;
pub const MAX_WINDOW: u64 = 3600;

/// Where the numbers come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// PromQL over a Prometheus server's HTTP API.
    Prometheus(PrometheusUrl),
    /// The control plane's own scrapes of the proxies.
    Scrape(Arc<Scraper>),
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::Prometheus(_) => "prometheus",
            Source::Scrape(_) => "scrape",
        }
    }

    async fn rates(&self, window: Duration) -> (Vec<series::RateSample>, Vec<String>) {
        match self {
            Source::Prometheus(url) => prometheus::rates(url, window).await,
            Source::Scrape(scraper) => scraper.rates(window, Instant::now()),
        }
    }
}

/// The parameters of `/graph/data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataQuery {
    /// `None`: every namespace.
    pub namespace: Option<String>,
    pub window: Duration,
}

/// A `/graph/data` parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter {parameter}: {reason}")]
pub struct BadQuery {
    pub parameter: &'static str,
    pub reason: String,
}

impl DataQuery {
    /// Parses `namespace=<ns>&window=<seconds>`; other parameters are
    /// ignored.
    pub fn parse(query: Option<&str>) -> Result<DataQuery, BadQuery> {
        let mut out = DataQuery {
            namespace: None,
            window: Duration::from_secs(DEFAULT_WINDOW),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "namespace" => {
                    let valid = value.len() <= 63
                        && value
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                    if !valid {
                        return Err(BadQuery {
                            parameter: "namespace",
                            reason: format!("{value:?} is not a namespace name"),
                        });
                    }
                    out.namespace = (!value.is_empty()).then(|| value.to_string());
                }
                "window" => {
                    let secs = value
                        .parse::<u64>()
                        .ok()
                        .filter(|s| (MIN_WINDOW..=MAX_WINDOW).contains(s))
                        .ok_or_else(|| BadQuery {
                            parameter: "window",
                            reason: format!(
                                "{value:?} is not a number of seconds in {MIN_WINDOW}..={MAX_WINDOW}"
                            ),
                        })?;
                    out.window = Duration::from_secs(secs);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The `/graph/data` document.
#[derive(Debug, Serialize)]
pub struct GraphData {
    pub source: &'static str,
    pub window_seconds: u64,
    pub generated_at: String,
    #[serde(flatten)]
    pub graph: build::Graph,
    pub errors: Vec<String>,
}

/// What `/graph/data` reads.
#[derive(Debug, Clone)]
pub struct GraphService {
    pub source: Source,
    pub state: watch::Receiver<Arc<MeshState>>,
}

impl GraphService {
    /// The graph for `query`, from the source's current numbers.
    pub async fn data(&self, query: &DataQuery) -> GraphData {
        let (samples, errors) = self.source.rates(query.window).await;
        let state = self.state.borrow().clone();
        let graph = build::build(&samples, &state, query.namespace.as_deref());
        GraphData {
            source: self.source.name(),
            window_seconds: query.window.as_secs(),
            generated_at: rfc3339(SystemTime::now()),
            graph,
            errors,
        }
    }
}

/// `2026-12-07T16:00:00Z`.
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `--graph-scrape-target`: `host:port`.
pub fn parse_target(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port"))?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?}: port {port:?} is not a port number"))?;
    if host.is_empty() || host.contains('/') {
        return Err(format!("{s:?}: {host:?} is not a host"));
    }
    Ok(s.to_string())
}

/// The scrape targets now: every connected proxy's address on port
/// [`scrape::METRICS_PORT`], and the static ones.
pub fn scrape_targets(proxies: &ConnectedProxies, extra: &[String]) -> Vec<String> {
    let mut targets: Vec<String> = proxies
        .list()
        .iter()
        .filter_map(|p| p.peer)
        .map(|peer| std::net::SocketAddr::new(peer.ip(), scrape::METRICS_PORT).to_string())
        .collect();
    targets.extend(extra.iter().cloned());
    targets
}

/// Scrapes every `interval` until dropped (the caller aborts the task).
pub async fn run_scraper(
    scraper: Arc<Scraper>,
    proxies: Arc<ConnectedProxies>,
    extra: Vec<String>,
    interval: Duration,
) {
    // A scrape that takes longer than the interval would pile up.
    let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        scraper
            .scrape_round(scrape_targets(&proxies, &extra), timeout)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_defaults_and_bounds() {
        let q = DataQuery::parse(None).unwrap();
        assert_eq!(q.window, Duration::from_secs(60));
        assert_eq!(q.namespace, None);
        let q = DataQuery::parse(Some("namespace=default&window=300&x=1")).unwrap();
        assert_eq!(q.namespace.as_deref(), Some("default"));
        assert_eq!(q.window, Duration::from_secs(300));
        assert_eq!(
            DataQuery::parse(Some("namespace=")).unwrap().namespace,
            None
        );
        let e = DataQuery::parse(Some("window=5")).unwrap_err();
        assert_eq!(e.parameter, "window");
        let e = DataQuery::parse(Some("window=abc")).unwrap_err();
        assert_eq!(e.parameter, "window");
        let e = DataQuery::parse(Some("namespace=a%2Fb")).unwrap_err();
        assert_eq!(e.parameter, "namespace");
    }

    #[test]
    fn targets_and_time() {
        assert_eq!(parse_target("10.0.0.9:15020").unwrap(), "10.0.0.9:15020");
        assert!(parse_target("gw.example:15020").is_ok());
        assert!(parse_target("10.0.0.9").is_err());
        assert!(parse_target("10.0.0.9:0").is_err());
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_659_200);
        assert_eq!(rfc3339(t), "2026-12-07T16:00:00Z");
    }
}
