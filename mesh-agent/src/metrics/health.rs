//! The agent's own health, read from its sources each time Prometheus
//! scrapes (a collector, not stored gauges: certificates come and go, maps
//! are counted in the kernel, and nothing has to be kept in step).
//! Names are listed in the parent module's doc.
use std::{
    sync::{atomic::Ordering, Arc},
    time::UNIX_EPOCH,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

use crate::{
    capture::{maps, pins::PinLayout},
    state::connections::ConnectionStats,
    state::runtime::MeshRuntime,
};

/// What the health metrics are read from.
pub struct Health {
    pub stats: Arc<ConnectionStats>,
    pub mesh: Option<Arc<MeshRuntime>>,
    /// The instance's pins, for map occupancy; `None` in tests.
    pub layout: Option<PinLayout>,
    /// The `capture_stats` map; `None` in tests.
    pub kernel_stats: Option<maps::StatsMap>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("mesh", &self.mesh.is_some())
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One family of `kind` with one label, values given per label value.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &str,
    values: Vec<(String, M)>,
) -> Result<(), std::fmt::Error> {
    if values.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (value_label, metric) in values {
        let labels = [(label, value_label)];
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Health {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.stats.totals();
        gauge(
            &mut encoder,
            "mesh_agent_active_connections",
            "Connections the agent is proxying now",
            totals.active as f64,
        )?;
        if let Some(mesh) = &self.mesh {
            let connected = mesh.xds.borrow().connected;
            gauge(
                &mut encoder,
                "mesh_agent_xds_connected",
                "1 while the xDS stream to the control plane is up",
                f64::from(u8::from(connected)),
            )?;
            gauge(
                &mut encoder,
                "mesh_agent_xds_last_update_timestamp_seconds",
                "Unix time the last xDS change was applied (0: never)",
                mesh.xds_updated_unix_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            )?;
            let certs = mesh
                .store
                .identities()
                .iter()
                .filter_map(|id| mesh.store.get(id))
                .map(|c| {
                    let expiry = c
                        .not_after()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    (c.identity().to_string(), ConstGauge::new(expiry))
                })
                .collect();
            family(
                &mut encoder,
                (
                    "mesh_agent_certificate_expiry_timestamp_seconds",
                    "Unix time the workload certificate of an identity expires",
                    MetricType::Gauge,
                ),
                "identity",
                certs,
            )?;
            let issued = ConstCounter::new(mesh.issued.load(Ordering::Relaxed));
            issued.encode(encoder.encode_descriptor(
                "mesh_agent_certificates_issued",
                "Workload certificates obtained from the CA since start",
                None,
                issued.metric_type(),
            )?)?;
            let refused = ConstCounter::new(mesh.wrong_identity.load(Ordering::Relaxed));
            refused.encode(encoder.encode_descriptor(
                "mesh_agent_certificates_refused",
                "Certificates the CA answered for another identity than the one asked (discarded)",
                None,
                refused.metric_type(),
            )?)?;
        }
        if let Some(layout) = &self.layout {
            let entries = maps::occupancy(layout)
                .into_iter()
                .map(|(name, n)| (name, ConstGauge::new(n as i64)))
                .collect();
            family(
                &mut encoder,
                (
                    "mesh_agent_bpf_map_entries",
                    "Entries in a pinned eBPF hash map",
                    MetricType::Gauge,
                ),
                "map",
                entries,
            )?;
        }
        if let Some(stats) = &self.kernel_stats {
            match maps::read_stats(stats) {
                Ok(counters) => family(
                    &mut encoder,
                    (
                        "mesh_agent_capture_events",
                        "Events counted by the capture programs in the kernel",
                        MetricType::Counter,
                    ),
                    "counter",
                    counters
                        .into_iter()
                        .map(|(name, v)| (name.to_string(), ConstCounter::new(v)))
                        .collect(),
                )?,
                Err(error) => tracing::debug!(%error, "cannot read capture_stats"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{tests::value, Metrics};

    #[test]
    fn active_connections_are_read_at_scrape_time() {
        let stats = Arc::new(ConnectionStats::default());
        let metrics = Metrics::new(
            crate::metrics::TcpMetrics::default(),
            Some(Health {
                stats: Arc::clone(&stats),
                mesh: None,
                layout: None,
                kernel_stats: None,
            }),
        );
        let text = metrics.encode().unwrap();
        assert_eq!(
            value(&text, "mesh_agent_active_connections", &[]),
            Some(0.0)
        );
        let open = stats.open(
            "10.0.0.2:1000".parse().unwrap(),
            "10.0.0.3:80".parse().unwrap(),
        );
        let text = metrics.encode().unwrap();
        assert_eq!(
            value(&text, "mesh_agent_active_connections", &[]),
            Some(1.0)
        );
        stats.finish(open, 0, 0, None);
    }
}
