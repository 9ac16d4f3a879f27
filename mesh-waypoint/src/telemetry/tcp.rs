//! Istio's TCP metrics (`istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_sent_bytes_total`,
//! `istio_tcp_received_bytes_total`) and the access log line of one
//! `tcp_proxy` connection of the gateway. The gateway reports as the
//! source: the source is the gateway's own workload, the destination the
//! cluster's service and the endpoint's workload; `connection_security_policy`
//! is `mutual_tls` when the upstream hop is an HBONE tunnel.
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde_json::{json, Value};

use mesh_hbone::LiveBytes;

use super::{
    labels::{clean, destination_service, PeerLabels, Peers, Reporter, Side},
    tcp_open::OpenToken,
    Telemetry,
};
use crate::upstream::{ClusterManager, Directory};

/// One `tcp_proxy` connection, as reported at open (bytes 0) and at close.
#[derive(Debug, Clone)]
pub struct TcpRecord {
    pub start: SystemTime,
    pub duration: Duration,
    /// The client's address (Envoy's downstream remote address).
    pub downstream: Option<SocketAddr>,
    /// `spiffe://…` of the client's verified certificate (MUTUAL).
    pub downstream_principal: Option<String>,
    /// The ClientHello's SNI (TLS chains).
    pub sni: Option<String>,
    pub cluster: Option<Arc<str>>,
    /// The service FQDN the cluster stands for.
    pub service: Option<Arc<str>>,
    /// The Istio workload uid of the endpoint.
    pub workload: Option<Arc<str>>,
    pub upstream_host: Option<SocketAddr>,
    /// The upstream hop is an HBONE tunnel.
    pub upstream_mtls: bool,
    /// Envoy response flag; None: `-`.
    pub flag: Option<&'static str>,
    /// Bytes from downstream (Istio's received bytes).
    pub received: u64,
    /// Bytes to downstream (Istio's sent bytes).
    pub sent: u64,
}

impl TcpRecord {
    /// A connection from `downstream` starting now.
    pub fn start(downstream: Option<SocketAddr>) -> Self {
        TcpRecord {
            start: SystemTime::now(),
            duration: Duration::ZERO,
            downstream,
            downstream_principal: None,
            sni: None,
            cluster: None,
            service: None,
            workload: None,
            upstream_host: None,
            upstream_mtls: false,
            flag: None,
            received: 0,
            sent: 0,
        }
    }
}

/// Istio's `istio_tcp_*` labels: the ones request metrics share.
pub type TcpLabels = PeerLabels;

/// The labels of `r` reported by `reporter` with `source` as the source
/// side (the gateway itself).
pub fn tcp_labels(reporter: Reporter, source: Side, r: &TcpRecord, dir: &Directory) -> TcpLabels {
    let destination = r
        .workload
        .as_deref()
        .and_then(|uid| dir.workload_by_uid(uid))
        .map_or_else(Side::unknown, |w| Side::from_workload(w));
    PeerLabels::new(Peers {
        reporter,
        source,
        destination,
        service: destination_service(r.service.as_deref(), dir),
        protocol: "tcp".into(),
        flags: r.flag.unwrap_or_default().into(),
        mutual_tls: r.upstream_mtls,
    })
}

/// Cloning shares the series.
#[derive(Debug, Clone, Default)]
pub struct TcpMetrics {
    pub opened: Family<TcpLabels, Counter>,
    pub closed: Family<TcpLabels, Counter>,
    pub sent: Family<TcpLabels, Counter>,
    pub received: Family<TcpLabels, Counter>,
}

impl TcpMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "istio_tcp_connections_opened",
            "TCP connections opened",
            self.opened.clone(),
        );
        r.register(
            "istio_tcp_connections_closed",
            "TCP connections closed",
            self.closed.clone(),
        );
        r.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the downstream of TCP connections",
            self.sent.clone(),
        );
        r.register(
            "istio_tcp_received_bytes",
            "Bytes received from the downstream of TCP connections",
            self.received.clone(),
        );
    }

    pub fn opened(&self, l: &TcpLabels) {
        self.opened.get_or_create(l).inc();
    }

    /// A closed connection and the bytes not counted yet.
    pub fn closed(&self, l: &TcpLabels, sent: u64, received: u64) {
        self.closed.get_or_create(l).inc();
        self.add_bytes(l, sent, received);
    }

    /// Bytes moved on a connection labelled `l`.
    pub fn add_bytes(&self, l: &TcpLabels, sent: u64, received: u64) {
        self.sent.get_or_create(l).inc_by(sent);
        self.received.get_or_create(l).inc_by(received);
    }
}

/// The access log line of a closed connection (Envoy's fields, JSON).
pub fn line(r: &TcpRecord, l: &TcpLabels) -> Value {
    json!({
        "start_time_ms": r.start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        "protocol": "tcp",
        "response_flags": l.response_flags,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
        "bytes_received": r.received,
        "bytes_sent": r.sent,
        "upstream_host": r.upstream_host.map(|a| a.to_string()),
        "upstream_cluster": r.cluster.as_deref(),
        "upstream_workload": r.workload.as_deref(),
        "downstream_remote_address": r.downstream.map(|a| a.to_string()),
        "downstream_peer_principal": r.downstream_principal,
        "requested_server_name": r.sni,
        "source_principal": l.source_principal,
        "source_workload": l.source_workload,
        "source_namespace": l.source_workload_namespace,
        "destination_service": l.destination_service,
        "destination_workload": l.destination_workload,
        "destination_namespace": l.destination_workload_namespace,
        "connection_security_policy": l.connection_security_policy,
    })
}

/// The source side of what a gateway proxies: its own workload when the
/// Address view knows `uid`, else its name and namespace.
pub fn own_side(uid: &str, name: &str, namespace: &str, dir: &Directory) -> Side {
    match dir.workload_by_uid(uid) {
        Some(w) => Side::from_workload(w),
        None => Side {
            workload: clean(name),
            namespace: clean(namespace),
            ..Side::unknown()
        },
    }
}

/// The gateway's handle on telemetry for `tcp_proxy` connections: the
/// metrics and access log of [`Telemetry`], named with the Address view of
/// the cluster manager.
pub struct TcpObserver {
    telemetry: Arc<Telemetry>,
    clusters: Arc<ClusterManager>,
}

impl TcpObserver {
    pub fn new(telemetry: Arc<Telemetry>, clusters: Arc<ClusterManager>) -> Arc<Self> {
        Arc::new(TcpObserver {
            telemetry,
            clusters,
        })
    }

    /// Counts an opened connection whose relay counts its bytes into
    /// `live` (read at each scrape while it is open).
    pub fn opened(&self, r: &TcpRecord, live: Arc<LiveBytes>) -> OpenToken {
        self.telemetry
            .tcp_opened(r, &self.clusters.directory(), live)
    }

    /// Counts a closed connection and the bytes no scrape has counted;
    /// the access log line.
    pub fn closed(&self, r: &TcpRecord, open: OpenToken) {
        self.telemetry
            .tcp_closed(r, &self.clusters.directory(), open);
    }
}
