//! One cluster at run time: its endpoints (each with a pool and an active
//! request count), circuit breakers, outlier detector and balancer, and
//! how one attempt is sent (pick a host, take the breaker units, send,
//! feed the outcome to outlier detection). An `ORIGINAL_DST` cluster has
//! no host list: each request's original destination (the HBONE tunnel's
//! `:authority`, or the header `original_dst_lb_config` names) becomes a
//! host on first use.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use http::Request;
use tokio::time::Instant;

use super::{
    api::{SendContext, UpstreamError, UpstreamResponse},
    breaker::{Breaker, Resource},
    cluster::{ClusterConfig, EndpointConfig},
    connector::{Connector, Route},
    directory::Directory,
    discovery::{Discovery, OriginalDstConfig},
    guarded::{ActiveGuard, GuardedBody},
    lb::Balancer,
    metrics::UpstreamMetrics,
    outlier::{Detector, Outcome},
    pool::Pool,
    tls::TlsOrigin,
};
use crate::{
    body::{self, Body},
    sync::MutexExt,
};

/// Envoy's `host_selection_retry_max_attempts` as Istio writes it.
const HOST_SELECTION_ATTEMPTS: u32 = 5;
/// Original destinations an `ORIGINAL_DST` cluster keeps hosts for; idle
/// ones are dropped to make room.
const MAX_ORIGINAL_HOSTS: usize = 1024;

/// One endpoint of a cluster.
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Istio workload uid (EDS metadata, else the Address xDS by IP).
    pub workload: Option<Arc<str>>,
    pub route: Route,
    pub pool: Arc<Pool>,
    pub active: Arc<AtomicU64>,
}

/// Runtime state of one cluster; rebuilt on every config change, sharing
/// the parts that must survive it (breaker, detector, pools, counts).
pub struct HostSet {
    pub cfg: ClusterConfig,
    pub breaker: Arc<Breaker>,
    pub endpoints: Vec<Arc<Endpoint>>,
    by_addr: HashMap<SocketAddr, Arc<Endpoint>>,
    pub outlier: Option<Arc<Mutex<Detector>>>,
    /// Over all endpoints: what a cluster without outlier detection uses.
    all: Arc<Balancer>,
    /// Over the eligible endpoints, for one detector generation; None =
    /// no healthy upstream.
    eligible: Mutex<(u64, Option<Arc<Balancer>>)>,
    /// A DNS cluster: true once its names were resolved (requests wait for
    /// that, up to the connect timeout).
    pub dns_ready: Option<watch::Receiver<bool>>,
    /// How hosts outside the mesh are reached: TLS when the cluster
    /// originates it, else plain TCP.
    direct: Route,
    /// `ORIGINAL_DST`: the hosts met so far, by original destination.
    original: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    /// The cluster's active-requests series, looked up on first use (not
    /// a label string per request).
    active_gauge: OnceLock<Gauge>,
}

impl HostSet {
    /// The new state of a cluster from its config and endpoints, keeping
    /// what `old` had for the endpoints that stay. Mesh workloads are
    /// reached over HBONE only when `hbone` (the waypoint has an HBONE
    /// client), else everything is plain TCP, as a stock Envoy does. With
    /// `tls` (the cluster originates TLS), and for DNS and ORIGINAL_DST
    /// clusters (hosts outside the mesh), every host is reached directly.
    pub fn build(
        old: Option<&HostSet>,
        cfg: ClusterConfig,
        endpoints: Vec<EndpointConfig>,
        dir: &Directory,
        hbone: bool,
        tls: Option<Arc<TlsOrigin>>,
    ) -> HostSet {
        let direct = tls.map_or(Route::Plain, Route::Tls);
        let external =
            !matches!(direct, Route::Plain) || !matches!(cfg.discovery, Discovery::Assigned);
        let breaker = match old {
            Some(o) => {
                o.breaker.set_limits(cfg.limits);
                Arc::clone(&o.breaker)
            }
            None => Breaker::new(cfg.limits),
        };
        let mut eps = Vec::with_capacity(endpoints.len());
        let mut by_addr = HashMap::new();
        for e in endpoints {
            if by_addr.contains_key(&e.addr) {
                continue;
            }
            let known = dir.endpoint_workload(e.workload_uid.as_deref(), e.addr.ip());
            let route = known
                .filter(|_| hbone && !external)
                .and_then(|w| w.hbone_target_at(e.addr.ip()))
                .map_or(direct.clone(), |(gateway, peer)| Route::Hbone {
                    gateway,
                    peer,
                });
            let workload = e
                .workload_uid
                .or_else(|| known.map(|w| w.uid.clone()))
                .map(Arc::from);
            let prev = old
                .and_then(|o| o.by_addr.get(&e.addr))
                .filter(|p| p.pool.protocol() == cfg.pool.protocol && p.route == route);
            let ep = Arc::new(Endpoint {
                addr: e.addr,
                workload,
                route,
                pool: prev.map_or_else(
                    || Pool::new(e.addr, cfg.pool.protocol),
                    |p| Arc::clone(&p.pool),
                ),
                active: prev.map_or_else(Default::default, |p| Arc::clone(&p.active)),
            });
            by_addr.insert(e.addr, Arc::clone(&ep));
            eps.push(ep);
        }
        let addrs: Vec<SocketAddr> = eps.iter().map(|e| e.addr).collect();
        let outlier = cfg.outlier.clone().map(|ocfg| {
            let d = match old.and_then(|o| o.outlier.as_ref()) {
                Some(d) => {
                    d.lock_unpoisoned().set_config(ocfg);
                    Arc::clone(d)
                }
                None => Arc::new(Mutex::new(Detector::new(ocfg, Instant::now()))),
            };
            d.lock_unpoisoned().set_hosts(addrs.iter().copied());
            d
        });
        let all = Arc::new(Balancer::new(cfg.lb, addrs));
        let original = old
            .filter(|o| o.direct == direct && o.cfg.pool.protocol == cfg.pool.protocol)
            .map(|o| o.original.lock_unpoisoned().clone())
            .unwrap_or_default();
        HostSet {
            cfg,
            breaker,
            endpoints: eps,
            by_addr,
            outlier,
            all,
            // No detector generation is u64::MAX: computed on first use.
            eligible: Mutex::new((u64::MAX, None)),
            dns_ready: None,
            original: Mutex::new(original),
            direct,
            active_gauge: OnceLock::new(),
        }
    }

    /// The host of an `ORIGINAL_DST` request: where the client connected
    /// (the tunnel's `:authority`), or the configured header's `ip:port`.
    fn original_host(
        &self,
        req: &Request<Body>,
        o: &OriginalDstConfig,
    ) -> Result<Arc<Endpoint>, UpstreamError> {
        let dst = match &o.header {
            Some(h) => req
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<SocketAddr>().ok()),
            None => req
                .extensions()
                .get::<Arc<crate::route::exchange::Exchange>>()
                .and_then(|ex| ex.downstream.tunnel_authority),
        }
        .ok_or(UpstreamError::NoHealthyUpstream)?;
        let dst = o
            .port_override
            .map_or(dst, |port| SocketAddr::new(dst.ip(), port));
        let mut hosts = self.original.lock_unpoisoned();
        if let Some(e) = hosts.get(&dst) {
            return Ok(Arc::clone(e));
        }
        if hosts.len() >= MAX_ORIGINAL_HOSTS {
            hosts.retain(|_, e| {
                e.active.load(Ordering::Relaxed) > 0 || e.pool.open_connections() > 0
            });
            if hosts.len() >= MAX_ORIGINAL_HOSTS {
                return Err(UpstreamError::Overflow("max_original_hosts"));
            }
        }
        let ep = Arc::new(Endpoint {
            addr: dst,
            workload: None,
            route: self.direct.clone(),
            pool: Pool::new(dst, self.cfg.pool.protocol),
            active: Arc::default(),
        });
        hosts.insert(dst, Arc::clone(&ep));
        Ok(ep)
    }

    /// The TLS the cluster originates, if any.
    pub fn tls(&self) -> Option<Arc<TlsOrigin>> {
        match &self.direct {
            Route::Tls(t) => Some(Arc::clone(t)),
            _ => None,
        }
    }

    pub fn endpoint(&self, addr: &SocketAddr) -> Option<&Arc<Endpoint>> {
        self.by_addr.get(addr)
    }

    pub fn is_ejected(&self, addr: &SocketAddr) -> bool {
        self.outlier
            .as_ref()
            .is_some_and(|d| d.lock_unpoisoned().is_ejected(addr))
    }

    pub fn total_ejections(&self, addr: &SocketAddr) -> u64 {
        self.outlier
            .as_ref()
            .map_or(0, |d| d.lock_unpoisoned().total_ejections(addr))
    }

    /// Hosts the balancer may use now: the healthy ones, or all of them in
    /// panic mode (healthy share below `healthy_panic_threshold`); None
    /// when there is no healthy host and panic mode is off.
    fn eligible(&self, d: &Detector) -> Option<Vec<SocketAddr>> {
        let all = || self.endpoints.iter().map(|e| e.addr).collect::<Vec<_>>();
        let healthy: Vec<SocketAddr> = self
            .endpoints
            .iter()
            .map(|e| e.addr)
            .filter(|a| !d.is_ejected(a))
            .collect();
        let panic = self.cfg.healthy_panic_threshold;
        let share = 100.0 * healthy.len() as f64 / self.endpoints.len().max(1) as f64;
        if panic > 0.0 && share < panic {
            return Some(all());
        }
        (!healthy.is_empty()).then_some(healthy)
    }

    /// The balancer for this moment: rebuilt only when ejections changed.
    fn balancer(&self, now: Instant) -> Result<Arc<Balancer>, UpstreamError> {
        if self.endpoints.is_empty() {
            return Err(UpstreamError::NoHealthyUpstream);
        }
        let Some(d) = &self.outlier else {
            return Ok(Arc::clone(&self.all));
        };
        let mut d = d.lock_unpoisoned();
        d.advance(now);
        let mut cache = self.eligible.lock_unpoisoned();
        if cache.0 != d.generation() {
            let b = self
                .eligible(&d)
                .map(|hosts| Arc::new(Balancer::new(self.cfg.lb, hosts)));
            *cache = (d.generation(), b);
        }
        cache.1.clone().ok_or(UpstreamError::NoHealthyUpstream)
    }

    /// Chooses the endpoint of one attempt.
    pub fn pick(&self, ctx: &SendContext, now: Instant) -> Result<Arc<Endpoint>, UpstreamError> {
        let balancer = self.balancer(now)?;
        let active = |a: &SocketAddr| {
            self.by_addr
                .get(a)
                .map_or(0, |e| e.active.load(Ordering::Relaxed))
        };
        let mut chosen = None;
        for attempt in 0..HOST_SELECTION_ATTEMPTS {
            let Some(addr) = balancer.pick(ctx.hash, attempt, active) else {
                break;
            };
            chosen = Some(addr);
            if !ctx.previous_hosts.contains(&addr) {
                break;
            }
        }
        chosen
            .and_then(|a| self.by_addr.get(&a).cloned())
            .ok_or(UpstreamError::NoHealthyUpstream)
    }

    /// Sends one attempt: breaker check, host pick, pooled send, outlier
    /// bookkeeping.
    pub async fn send(
        self: Arc<Self>,
        req: Request<Body>,
        ctx: SendContext,
        connector: Connector,
        metrics: UpstreamMetrics,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let name = self.cfg.name.as_str();
        let overflow = |r: Resource| {
            metrics
                .overflow
                .get_or_create(&super::metrics::OverflowLabels {
                    cluster: name.to_string(),
                    breaker: r.name().to_string(),
                })
                .inc();
            UpstreamError::Overflow(r.name())
        };
        let request_unit = self
            .breaker
            .try_acquire(Resource::Requests)
            .ok_or_else(|| overflow(Resource::Requests))?;
        let ep = match &self.cfg.discovery {
            Discovery::OriginalDst(o) => self.original_host(&req, o)?,
            _ => self.pick(&ctx, Instant::now())?,
        };
        let gauge = self
            .active_gauge
            .get_or_init(|| {
                metrics
                    .active_requests
                    .get_or_create(&UpstreamMetrics::cluster(name))
                    .clone()
            })
            .clone();
        let active = ActiveGuard::new(&ep.active, gauge);
        let result = ep
            .pool
            .send(req, self.cfg.pool, &self.breaker, &connector, &ep.route)
            .await;
        let outcome = match &result {
            Ok((resp, _)) => Some(Outcome::Status(resp.status().as_u16())),
            Err(UpstreamError::ConnectFailure(_)) => {
                metrics
                    .connect_failures
                    .get_or_create(&UpstreamMetrics::cluster(name))
                    .inc();
                Some(Outcome::LocalFailure)
            }
            Err(UpstreamError::Reset(_) | UpstreamError::RefusedStream(_)) => {
                Some(Outcome::LocalFailure)
            }
            Err(UpstreamError::Overflow(r)) => {
                metrics
                    .overflow
                    .get_or_create(&super::metrics::OverflowLabels {
                        cluster: name.to_string(),
                        breaker: r.to_string(),
                    })
                    .inc();
                None
            }
            Err(_) => None,
        };
        if let (Some(outcome), Some(d)) = (outcome, &self.outlier) {
            if d.lock_unpoisoned().report(ep.addr, outcome, Instant::now()) {
                metrics
                    .ejections
                    .get_or_create(&UpstreamMetrics::cluster(name))
                    .inc();
            }
        }
        let (response, release) = result?;
        let response =
            response.map(|b| body::boxed(GuardedBody::new(b, request_unit, active, release)));
        Ok(UpstreamResponse {
            response,
            endpoint: ep.addr,
            workload: ep.workload.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::{
        cluster::{LbPolicy, Limits, PoolConfig, Protocol},
        outlier::OutlierConfig,
    };

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 80))
    }

    fn set(lb: LbPolicy, n: u8, panic: f64) -> HostSet {
        let cfg = ClusterConfig {
            name: "c".into(),
            lb,
            limits: Limits::default(),
            pool: PoolConfig {
                protocol: Protocol::Http1,
                idle_timeout: Duration::from_secs(60),
                max_requests_per_connection: 0,
                connect_timeout: Duration::from_secs(1),
            },
            outlier: Some(OutlierConfig {
                consecutive_5xx: 1,
                enforcing_consecutive_5xx: 100,
                consecutive_gateway_failure: 5,
                enforcing_consecutive_gateway_failure: 0,
                interval: Duration::from_secs(10),
                base_ejection_time: Duration::from_secs(30),
                max_ejection_percent: 100,
                max_ejection_time: Duration::from_secs(300),
            }),
            healthy_panic_threshold: panic,
            discovery: Discovery::Assigned,
            tls: None,
            service: None,
        };
        let eps = (1..=n)
            .map(|i| EndpointConfig {
                addr: addr(i),
                workload_uid: None,
            })
            .collect();
        HostSet::build(None, cfg, eps, &Directory::default(), false, None)
    }

    fn eject(s: &HostSet, a: SocketAddr, now: Instant) {
        let d = s.outlier.as_ref().unwrap();
        assert!(d.lock_unpoisoned().report(a, Outcome::Status(500), now));
    }

    fn picks(s: &HostSet, ctx: &SendContext, now: Instant, n: usize) -> Vec<SocketAddr> {
        (0..n).map(|_| s.pick(ctx, now).unwrap().addr).collect()
    }

    #[test]
    fn ejected_hosts_get_nothing_until_panic() {
        let now = Instant::now();
        let s = set(LbPolicy::RoundRobin, 4, 50.0);
        eject(&s, addr(1), now);
        let p = picks(&s, &SendContext::default(), now, 30);
        assert!(!p.contains(&addr(1)), "{p:?}");
        eject(&s, addr(2), now);
        // 50% healthy is not below the threshold.
        assert!(!picks(&s, &SendContext::default(), now, 30).contains(&addr(2)));
        eject(&s, addr(3), now);
        // 25% healthy < 50%: panic, all four take traffic.
        let p = picks(&s, &SendContext::default(), now, 8);
        for i in 1..=4 {
            assert!(p.contains(&addr(i)), "{p:?}");
        }
    }

    #[test]
    fn no_panic_threshold_means_no_healthy_upstream() {
        let now = Instant::now();
        let s = set(LbPolicy::LeastRequest, 2, 0.0);
        eject(&s, addr(1), now);
        eject(&s, addr(2), now);
        assert!(matches!(
            s.pick(&SendContext::default(), now),
            Err(UpstreamError::NoHealthyUpstream)
        ));
        // Back at the first sweep after the base ejection time (sweeps run
        // every 10s from when the detector was made, just after `now`).
        let later = now + Duration::from_secs(35);
        assert!(s.pick(&SendContext::default(), later).is_ok());
    }

    #[test]
    fn retries_avoid_previous_hosts_when_others_exist() {
        let now = Instant::now();
        let s = set(LbPolicy::RoundRobin, 2, 0.0);
        let ctx = SendContext {
            hash: None,
            previous_hosts: vec![addr(1)],
        };
        assert!(picks(&s, &ctx, now, 10).iter().all(|a| *a == addr(2)));
        let only = set(LbPolicy::RoundRobin, 1, 0.0);
        assert_eq!(only.pick(&ctx, now).unwrap().addr, addr(1));
    }

    #[test]
    fn consistent_hash_moves_off_an_ejected_host_and_back() {
        let now = Instant::now();
        for lb in [
            LbPolicy::RingHash {
                min_ring_size: 1024,
            },
            LbPolicy::Maglev { table_size: 65537 },
        ] {
            let s = set(lb, 5, 0.0);
            let ctx = SendContext {
                hash: Some(0xdead_beef),
                previous_hosts: vec![],
            };
            let home = s.pick(&ctx, now).unwrap().addr;
            assert!(picks(&s, &ctx, now, 10).iter().all(|a| *a == home));
            eject(&s, home, now);
            let away = s.pick(&ctx, now).unwrap().addr;
            assert_ne!(away, home);
            assert!(picks(&s, &ctx, now, 10).iter().all(|a| *a == away));
            assert_eq!(
                s.pick(&ctx, now + Duration::from_secs(40)).unwrap().addr,
                home
            );
        }
    }

    #[test]
    fn rebuild_keeps_pools_and_counts_of_staying_endpoints() {
        let s = set(LbPolicy::RoundRobin, 2, 0.0);
        s.endpoint(&addr(1))
            .unwrap()
            .active
            .store(3, Ordering::Relaxed);
        eject(&s, addr(2), Instant::now());
        let next = HostSet::build(
            Some(&s),
            s.cfg.clone(),
            vec![
                EndpointConfig {
                    addr: addr(2),
                    workload_uid: None,
                },
                EndpointConfig {
                    addr: addr(1),
                    workload_uid: None,
                },
                EndpointConfig {
                    addr: addr(9),
                    workload_uid: None,
                },
            ],
            &Directory::default(),
            false,
            None,
        );
        let (old1, new1) = (
            s.endpoint(&addr(1)).unwrap(),
            next.endpoint(&addr(1)).unwrap(),
        );
        assert!(Arc::ptr_eq(&old1.pool, &new1.pool));
        assert_eq!(new1.active.load(Ordering::Relaxed), 3);
        assert!(next.is_ejected(&addr(2)));
        assert!(Arc::ptr_eq(&s.breaker, &next.breaker));
        assert_eq!(next.endpoints.len(), 3);
    }
}
