//! Upstream health metrics (`mesh_waypoint_*`), shared by every cluster
//! and registered by telemetry next to Istio's request metrics.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClusterLabel {
    pub cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OverflowLabels {
    pub cluster: String,
    /// The threshold that refused: `max_pending_requests`, …
    pub breaker: String,
}

/// Cloning shares the series.
#[derive(Debug, Clone, Default)]
pub struct UpstreamMetrics {
    pub overflow: Family<OverflowLabels, Counter>,
    pub ejections: Family<ClusterLabel, Counter>,
    pub active_requests: Family<ClusterLabel, Gauge>,
    pub connect_failures: Family<ClusterLabel, Counter>,
}

impl UpstreamMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "mesh_waypoint_upstream_overflow",
            "Requests refused by a circuit breaker (response flag UO)",
            self.overflow.clone(),
        );
        r.register(
            "mesh_waypoint_outlier_ejections",
            "Hosts ejected by outlier detection",
            self.ejections.clone(),
        );
        r.register(
            "mesh_waypoint_upstream_active_requests",
            "Requests in flight to the cluster",
            self.active_requests.clone(),
        );
        r.register(
            "mesh_waypoint_upstream_connect_failures",
            "Failed connection attempts to endpoints (response flag UF)",
            self.connect_failures.clone(),
        );
    }

    pub fn cluster(name: &str) -> ClusterLabel {
        ClusterLabel {
            cluster: name.to_string(),
        }
    }
}
