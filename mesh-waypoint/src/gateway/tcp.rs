//! Envoy's `tcp_proxy` on the gateway: a chain's target ([`TcpTarget`]:
//! one cluster, or weighted clusters), the clusters' endpoints
//! ([`TcpUpstreams`], rebuilt from CDS + EDS + Address on every update:
//! mesh workloads over HBONE with the gateway's identity through the same
//! [`Connector`] the HTTP pools use, others in plain TCP), and the byte
//! relay ([`relay`]) with Envoy's one-hour idle timeout.
use std::{
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, RwLock,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use envoy_types::pb::envoy::{
    config::{cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Filter},
    extensions::filters::network::tcp_proxy::v3::{tcp_proxy::ClusterSpecifier, TcpProxy},
};
use mesh_xds::{XdsResource, XdsSnapshot, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    config::{at, ConfigError},
    sync::RwLockExt,
    upstream::cluster_name::IstioClusterName,
    upstream::{
        cluster::{endpoints, ClusterConfig},
        connector::{BoxIo, Connector, Route},
        Directory, UpstreamError,
    },
};

pub const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
const TCP_PROXY_TYPE: &str = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
/// Envoy's `tcp_proxy` `idle_timeout` default.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default `connect_timeout`, for a cluster CDS has not sent.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a `tcp_proxy` sends a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTarget {
    pub stat_prefix: String,
    /// `(cluster, weight)`; one entry for `cluster`.
    pub clusters: Vec<(String, u32)>,
}

impl TcpTarget {
    /// The target of `f` if it is a `tcp_proxy` filter (by name or type).
    pub fn from_filter(f: &Filter, field: &str) -> Result<Option<TcpTarget>, ConfigError> {
        use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
        let any = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => Some(any),
            _ => None,
        };
        let type_of =
            |a: &mesh_xds::proto::wkt::Any| a.type_url.rsplit('/').next().unwrap_or("").to_string();
        let typed = any.is_some_and(|a| type_of(a) == TCP_PROXY_TYPE);
        if f.name != TCP_PROXY_FILTER && !typed {
            return Ok(None);
        }
        let Some(any) = any else {
            return Err(ConfigError::new(at(field, "typed_config"), "missing"));
        };
        if type_of(any) != TCP_PROXY_TYPE {
            return Err(ConfigError::new(
                at(field, "typed_config"),
                format!("expected {TCP_PROXY_TYPE}, got type {:?}", any.type_url),
            ));
        }
        let p = <TcpProxy as prost::Message>::decode(any.value.as_slice()).map_err(|e| {
            ConfigError::new(
                at(field, "typed_config"),
                format!("undecodable {TCP_PROXY_TYPE}: {e}"),
            )
        })?;
        let clusters = match p.cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) if !c.is_empty() => vec![(c, 1)],
            Some(ClusterSpecifier::WeightedClusters(w)) => w
                .clusters
                .into_iter()
                .filter(|c| c.weight > 0)
                .map(|c| (c.name, c.weight))
                .collect(),
            _ => vec![],
        };
        if clusters.is_empty() {
            return Err(ConfigError::new(
                at(field, "typed_config.cluster_specifier"),
                "needs a cluster or weighted clusters with a weight above 0",
            ));
        }
        Ok(Some(TcpTarget {
            stat_prefix: p.stat_prefix,
            clusters,
        }))
    }

    /// The cluster for a connection, by weight; `roll` is any number.
    pub fn pick(&self, roll: u64) -> &str {
        let total: u64 = self.clusters.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut at = roll % total.max(1);
        for (c, w) in &self.clusters {
            if at < u64::from(*w) {
                return c;
            }
            at -= u64::from(*w);
        }
        &self.clusters[0].0
    }
}

struct TcpEndpoint {
    addr: SocketAddr,
    route: Route,
    /// The Istio workload uid the Address view knows the endpoint as.
    workload: Option<Arc<str>>,
}

struct TcpCluster {
    /// The service FQDN the cluster stands for (telemetry).
    service: Option<Arc<str>>,
    endpoints: Vec<TcpEndpoint>,
    next: AtomicUsize,
    connect_timeout: Duration,
}

/// Every cluster's endpoints, for `tcp_proxy` chains.
pub struct TcpUpstreams {
    connector: Connector,
    clusters: RwLock<Arc<HashMap<String, Arc<TcpCluster>>>>,
    rolls: AtomicU64,
}

impl TcpUpstreams {
    /// Dials with `connector` (its HBONE client and identity, when set).
    pub fn new(connector: Connector) -> Arc<Self> {
        Arc::new(TcpUpstreams {
            connector,
            clusters: RwLock::default(),
            rolls: AtomicU64::new(0),
        })
    }

    /// Rebuilds every cluster from CDS + EDS (or an inline load
    /// assignment), each endpoint reached over HBONE when the Address view
    /// knows it as a mesh workload and the gateway has an HBONE client.
    pub fn apply<'a>(
        &self,
        clusters: impl IntoIterator<Item = &'a Cluster>,
        clas: impl IntoIterator<Item = &'a ClusterLoadAssignment>,
        dir: &Directory,
    ) {
        let clas: HashMap<&str, &ClusterLoadAssignment> = clas
            .into_iter()
            .map(|c| (c.cluster_name.as_str(), c))
            .collect();
        let hbone = self.connector.hbone.is_some();
        let mut next = HashMap::new();
        for c in clusters {
            let Ok(cfg) = ClusterConfig::from_proto(c) else {
                continue; // the cluster manager logs it
            };
            let cla = clas
                .get(c.name.as_str())
                .copied()
                .or(c.load_assignment.as_ref());
            let eps = cla.and_then(|cla| endpoints(cla).ok()).unwrap_or_default();
            let endpoints = eps
                .into_iter()
                .map(|e| {
                    let workload = dir.endpoint_workload(e.workload_uid.as_deref(), e.addr.ip());
                    let route = workload
                        .filter(|_| hbone)
                        .and_then(|w| w.hbone_target())
                        .map_or(Route::Plain, |(gateway, peer)| Route::Hbone {
                            gateway,
                            peer,
                        });
                    TcpEndpoint {
                        addr: e.addr,
                        route,
                        workload: workload.map(|w| Arc::from(w.uid.as_str())),
                    }
                })
                .collect();
            let service = cfg
                .service
                .as_ref()
                .map(|s| s.host.as_str())
                .or_else(|| IstioClusterName::parse(&c.name).map(|n| n.host))
                .map(Arc::from);
            next.insert(
                c.name.clone(),
                Arc::new(TcpCluster {
                    service,
                    endpoints,
                    next: AtomicUsize::new(0),
                    connect_timeout: cfg.pool.connect_timeout,
                }),
            );
        }
        *self.clusters.write_unpoisoned() = Arc::new(next);
    }

    /// [`Self::apply`] from an xDS snapshot's clusters and endpoints.
    pub fn apply_snapshot(&self, snap: &XdsSnapshot, dir: &Directory) {
        let clusters = snap
            .resources(CLUSTER_TYPE_URL)
            .filter_map(|(_, r)| match &*r.resource {
                XdsResource::Cluster(c) => Some(c.as_ref()),
                _ => None,
            });
        let clas = snap
            .resources(ENDPOINT_TYPE_URL)
            .filter_map(|(_, r)| match &*r.resource {
                XdsResource::ClusterLoadAssignment(c) => Some(c.as_ref()),
                _ => None,
            });
        self.apply(clusters, clas, dir);
    }

    /// Adds or replaces one cluster of plain endpoints (tests, tools).
    pub fn set_endpoints(&self, cluster: &str, addrs: Vec<SocketAddr>) {
        let mut clusters = self.clusters.write_unpoisoned();
        let mut next = (**clusters).clone();
        next.insert(
            cluster.to_string(),
            Arc::new(TcpCluster {
                service: IstioClusterName::parse(cluster)
                    .map(|n| n.host)
                    .map(Arc::from),
                endpoints: addrs
                    .into_iter()
                    .map(|addr| TcpEndpoint {
                        addr,
                        route: Route::Plain,
                        workload: None,
                    })
                    .collect(),
                next: AtomicUsize::new(0),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            }),
        );
        *clusters = Arc::new(next);
    }

    /// A connection to the next endpoint (round robin) of a cluster
    /// `target` picks; one attempt, as Envoy's `max_connect_attempts`.
    pub async fn connect(&self, target: &TcpTarget) -> Result<Connected, ConnectFailure> {
        let roll = self.rolls.fetch_add(1, Ordering::Relaxed);
        let name = target.pick(roll.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11);
        let cluster = self.clusters.read_unpoisoned().get(name).cloned();
        let fail = |error, service: Option<&Arc<str>>| ConnectFailure {
            error,
            cluster: Arc::from(name),
            service: service.cloned(),
        };
        let Some(cluster) = cluster else {
            return Err(fail(UpstreamError::UnknownCluster(name.to_string()), None));
        };
        if cluster.endpoints.is_empty() {
            return Err(fail(
                UpstreamError::NoHealthyUpstream,
                cluster.service.as_ref(),
            ));
        }
        let i = cluster.next.fetch_add(1, Ordering::Relaxed) % cluster.endpoints.len();
        let ep = &cluster.endpoints[i];
        match self
            .connector
            .connect(ep.addr, &ep.route, cluster.connect_timeout)
            .await
        {
            Ok(io) => Ok(Connected {
                io,
                cluster: Arc::from(name),
                service: cluster.service.clone(),
                endpoint: ep.addr,
                workload: ep.workload.clone(),
                hbone: matches!(ep.route, Route::Hbone { .. }),
            }),
            Err(error) => Err(fail(error, cluster.service.as_ref())),
        }
    }
}

/// An upstream connection of a `tcp_proxy` chain and what telemetry
/// reports about it.
pub struct Connected {
    pub io: BoxIo,
    pub cluster: Arc<str>,
    /// The service FQDN the cluster stands for, when known.
    pub service: Option<Arc<str>>,
    pub endpoint: SocketAddr,
    /// The endpoint's Istio workload uid, when the Address view knows it.
    pub workload: Option<Arc<str>>,
    /// The hop is an HBONE tunnel (mutual TLS).
    pub hbone: bool,
}

/// No upstream connection: why, and the cluster that was picked.
#[derive(Debug)]
pub struct ConnectFailure {
    pub error: UpstreamError,
    pub cluster: Arc<str>,
    pub service: Option<Arc<str>>,
}

/// A stream that notes when bytes last moved in either direction.
struct Watched<S> {
    inner: S,
    last: Arc<AtomicU64>,
    start: Instant,
    /// Bytes read from this side.
    read: u64,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read += n as u64;
            self.last
                .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a relay ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides closed.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    Error(std::io::Error),
}

/// A finished relay: how it ended and the bytes read from each side.
#[derive(Debug)]
pub struct Relayed {
    pub end: RelayEnd,
    /// Bytes from downstream (relayed upstream).
    pub from_downstream: u64,
    /// Bytes from upstream (relayed downstream).
    pub from_upstream: u64,
}

/// Copies bytes both ways (half-closes passed on) until both sides close,
/// an error, or nothing moves for `idle`.
pub async fn relay<D, U>(down: D, up: U, idle: Duration) -> Relayed
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut down = Watched {
        inner: down,
        last: last.clone(),
        start,
        read: 0,
    };
    let mut up = Watched {
        inner: up,
        last: last.clone(),
        start,
        read: 0,
    };
    let watch = async {
        loop {
            let quiet = start
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    let end = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut down, &mut up) => match r {
            Ok(_) => RelayEnd::Closed,
            Err(e) => RelayEnd::Error(e),
        },
        () = watch => RelayEnd::Idle,
    };
    Relayed {
        end,
        from_downstream: down.read,
        from_upstream: up.read,
    }
}
