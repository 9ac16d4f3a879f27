//! [`ClusterManager`]: all clusters, rebuilt from CDS + EDS + Address on
//! every snapshot, serving [`Upstream::send`] for the route side and the
//! clusters/endpoints part of `/config_dump`. DNS clusters get a refresh
//! task each ([`super::dns`]), kept while their names and settings stay
//! the same; their hosts replace the cluster's as resolutions change.
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{atomic::Ordering, Arc, Mutex, RwLock, Weak},
};

use envoy_types::pb::envoy::config::{cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment};
use futures::future::BoxFuture;
use http::Request;
use mesh_xds::{FieldRejection, XdsResource, XdsSnapshot, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL};
use serde_json::{json, Value};

use super::{
    api::{RetryPermit, SendContext, Upstream, UpstreamError, UpstreamResponse},
    breaker::Resource,
    cluster::{endpoints, ClusterConfig, EndpointConfig},
    connector::{Connector, Route},
    directory::Directory,
    discovery::{Discovery, DnsConfig},
    dns::{DnsResolver, Resolutions},
    host_set::HostSet,
    metrics::{OverflowLabels, UpstreamMetrics},
    tls::TlsOrigin,
};
use crate::{
    body::Body,
    sync::{MutexExt, RwLockExt},
};

/// What the upstream side needs from the binary.
#[derive(Clone, Default)]
pub struct UpstreamOptions {
    /// None: plain TCP only (mesh workloads are then unreachable).
    pub hbone: Option<Arc<mesh_hbone::HboneClient>>,
    /// The waypoint's own identity (HBONE source).
    pub identity: Option<mesh_hbone::Identity>,
}

/// What hosts outside the mesh need: DNS and TLS origination.
#[derive(Debug, Clone)]
pub struct ExternalOptions {
    /// The DNS server DNS clusters ask; None: `/etc/resolv.conf`.
    pub dns_upstream: Option<SocketAddr>,
    /// Where SDS names (`kubernetes://<secret>`) of upstream TLS contexts
    /// are mounted, as for the gateway.
    pub credential_dir: PathBuf,
}

impl Default for ExternalOptions {
    fn default() -> Self {
        ExternalOptions {
            dns_upstream: None,
            credential_dir: PathBuf::from("/etc/istio/credentials"),
        }
    }
}

type Clusters = HashMap<String, Arc<HostSet>>;

/// The refresh task of one DNS cluster.
struct DnsRun {
    cfg: DnsConfig,
    /// The hosts of the last round; None before the first.
    hosts: Option<Vec<SocketAddr>>,
    ready: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::AbortHandle,
}

impl Drop for DnsRun {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct ClusterManager {
    me: Weak<ClusterManager>,
    connector: Connector,
    external: ExternalOptions,
    clusters: RwLock<Arc<Clusters>>,
    directory: RwLock<Arc<Directory>>,
    metrics: UpstreamMetrics,
    resolver: Mutex<Option<Arc<DnsResolver>>>,
    /// By cluster name. Locked before `clusters` wherever both are.
    dns: Mutex<HashMap<String, DnsRun>>,
}

impl ClusterManager {
    pub fn new(opts: UpstreamOptions) -> Arc<Self> {
        Self::with_external(opts, ExternalOptions::default())
    }

    pub fn with_external(opts: UpstreamOptions, external: ExternalOptions) -> Arc<Self> {
        Arc::new_cyclic(|me| ClusterManager {
            me: me.clone(),
            connector: Connector {
                hbone: opts.hbone,
                identity: opts.identity,
            },
            external,
            clusters: RwLock::default(),
            directory: RwLock::default(),
            metrics: UpstreamMetrics::default(),
            resolver: Mutex::default(),
            dns: Mutex::default(),
        })
    }

    /// The shared resolver, made on first use (inside the runtime).
    fn resolver(&self) -> Result<Arc<DnsResolver>, String> {
        let mut r = self.resolver.lock_unpoisoned();
        if let Some(r) = r.as_ref() {
            return Ok(Arc::clone(r));
        }
        let made = Arc::new(DnsResolver::new(self.external.dns_upstream)?);
        *r = Some(Arc::clone(&made));
        Ok(made)
    }

    /// Starts resolving `name`'s hosts; None without a runtime or resolver.
    fn start_dns(&self, name: &str, cfg: &DnsConfig) -> Option<DnsRun> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| tracing::warn!(cluster = %name, "no runtime: DNS cluster not resolved"))
            .ok()?;
        let resolver = self
            .resolver()
            .map_err(|e| tracing::warn!(cluster = %name, error = %e, "DNS cluster not resolved"))
            .ok()?;
        let (tx, ready) = tokio::sync::watch::channel(false);
        let (me, name_owned, run_cfg) = (self.me.clone(), name.to_string(), cfg.clone());
        let task = handle.spawn(async move {
            let mut state = Resolutions::default();
            loop {
                let (hosts, next) = state.round(&resolver, &name_owned, &run_cfg).await;
                let Some(cm) = me.upgrade() else { return };
                cm.dns_resolved(&name_owned, &run_cfg, hosts);
                drop(cm);
                tx.send_replace(true);
                tokio::time::sleep(next).await;
            }
        });
        Some(DnsRun {
            cfg: cfg.clone(),
            hosts: None,
            ready,
            task: task.abort_handle(),
        })
    }

    /// A DNS round's hosts for `name`, if its run is still the current one.
    fn dns_resolved(&self, name: &str, cfg: &DnsConfig, hosts: Vec<SocketAddr>) {
        let mut dns = self.dns.lock_unpoisoned();
        let Some(run) = dns.get_mut(name).filter(|r| r.cfg == *cfg) else {
            return;
        };
        if run.hosts.as_ref() == Some(&hosts) {
            return;
        }
        run.hosts = Some(hosts.clone());
        let dir = self.directory();
        let mut clusters = self.clusters.write_unpoisoned();
        let Some(old) = clusters.get(name).cloned() else {
            return;
        };
        let set = HostSet::build(
            Some(&old),
            old.cfg.clone(),
            plain_endpoints(hosts),
            &dir,
            false,
            old.tls(),
        );
        let mut set = set;
        set.dns_ready = old.dns_ready.clone();
        let mut next = (**clusters).clone();
        next.insert(name.to_string(), Arc::new(set));
        *clusters = Arc::new(next);
    }

    /// The `mesh_waypoint_*` upstream series (telemetry registers them).
    pub fn metrics(&self) -> &UpstreamMetrics {
        &self.metrics
    }

    /// Rebuilds clusters and endpoints from CDS + EDS + Address; keeps
    /// pools, outlier state and active counts of endpoints that stay.
    pub fn apply(&self, snapshot: &XdsSnapshot) {
        let clusters =
            snapshot
                .resources(CLUSTER_TYPE_URL)
                .filter_map(|(_, r)| match &*r.resource {
                    XdsResource::Cluster(c) => Some(c.as_ref()),
                    _ => None,
                });
        let clas = snapshot
            .resources(ENDPOINT_TYPE_URL)
            .filter_map(|(_, r)| match &*r.resource {
                XdsResource::ClusterLoadAssignment(c) => Some(c.as_ref()),
                _ => None,
            });
        self.apply_resources(clusters, clas, Directory::from_snapshot(snapshot));
    }

    /// [`Self::apply`] from the resources themselves.
    pub fn apply_resources<'a>(
        &self,
        clusters: impl IntoIterator<Item = &'a Cluster>,
        clas: impl IntoIterator<Item = &'a ClusterLoadAssignment>,
        directory: Directory,
    ) {
        let clas: HashMap<&str, &ClusterLoadAssignment> = clas
            .into_iter()
            .map(|c| (c.cluster_name.as_str(), c))
            .collect();
        let mut dns = self.dns.lock_unpoisoned();
        let old = self.clusters.read_unpoisoned().clone();
        let mut next = Clusters::new();
        let mut services = Vec::new();
        for c in clusters {
            let cfg = match ClusterConfig::from_proto(c) {
                Ok(cfg) => cfg,
                Err((field, reason)) => {
                    tracing::warn!(cluster = %c.name, %field, %reason, "cluster ignored");
                    continue;
                }
            };
            let tls = match cfg
                .tls
                .as_ref()
                .map(|spec| TlsOrigin::build(spec, &self.external.credential_dir))
            {
                None => None,
                Some(Ok(t)) => Some(t),
                Some(Err((field, reason))) => {
                    // Never plaintext instead: requests get NC.
                    tracing::warn!(cluster = %c.name, %field, %reason, "cluster ignored");
                    continue;
                }
            };
            if let Some(s) = &cfg.service {
                services.push(s.clone());
            }
            let mut ready = None;
            let eps = match &cfg.discovery {
                Discovery::Assigned => {
                    // EDS, else an inline load_assignment (STATIC clusters).
                    let cla = clas
                        .get(c.name.as_str())
                        .copied()
                        .or(c.load_assignment.as_ref());
                    match cla.map(endpoints).transpose() {
                        Ok(eps) => eps.unwrap_or_default(),
                        Err((field, reason)) => {
                            tracing::warn!(cluster = %c.name, %field, %reason, "endpoints ignored");
                            Vec::new()
                        }
                    }
                }
                Discovery::Dns(d) => {
                    if dns.get(&c.name).is_none_or(|r| r.cfg != *d) {
                        dns.remove(&c.name);
                        if let Some(run) = self.start_dns(&c.name, d) {
                            dns.insert(c.name.clone(), run);
                        }
                    }
                    let run = dns.get(&c.name);
                    ready = run.map(|r| r.ready.clone());
                    plain_endpoints(run.and_then(|r| r.hosts.clone()).unwrap_or_default())
                }
                Discovery::OriginalDst(_) => Vec::new(),
            };
            let set = HostSet::build(
                old.get(&c.name).map(|s| s.as_ref()),
                cfg,
                eps,
                &directory,
                self.connector.hbone.is_some(),
                tls,
            );
            let mut set = set;
            set.dns_ready = ready;
            next.insert(c.name.clone(), Arc::new(set));
        }
        dns.retain(|name, _| {
            next.get(name)
                .is_some_and(|s| matches!(s.cfg.discovery, Discovery::Dns(_)))
        });
        let directory = directory.with_cluster_services(services);
        tracing::debug!(
            clusters = next.len(),
            workloads = directory.workloads(),
            "upstream config applied"
        );
        *self.directory.write_unpoisoned() = Arc::new(directory);
        *self.clusters.write_unpoisoned() = Arc::new(next);
        drop(dns);
    }

    /// Adds or replaces one cluster with Envoy's defaults (round robin,
    /// HTTP/1.1, default circuit breakers, no outlier detection) and these
    /// plain endpoints, leaving the others as they are: for tests and
    /// tools that have no xDS.
    pub fn set_endpoints(&self, cluster: &str, addrs: Vec<SocketAddr>) {
        let proto = Cluster {
            name: cluster.to_string(),
            ..Default::default()
        };
        let Ok(cfg) = ClusterConfig::from_proto(&proto) else {
            tracing::warn!(%cluster, "cluster name refused");
            return;
        };
        let eps = plain_endpoints(addrs);
        let dir = self.directory();
        let mut clusters = self.clusters.write_unpoisoned();
        let set = HostSet::build(
            clusters.get(cluster).map(|s| s.as_ref()),
            cfg,
            eps,
            &dir,
            self.connector.hbone.is_some(),
            None,
        );
        let mut next = (**clusters).clone();
        next.insert(cluster.to_string(), Arc::new(set));
        *clusters = Arc::new(next);
    }

    /// The current Address view.
    pub fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.directory.read_unpoisoned())
    }

    fn cluster(&self, name: &str) -> Option<Arc<HostSet>> {
        self.clusters.read_unpoisoned().get(name).cloned()
    }

    /// `{"clusters": [..], "endpoints": [..]}` for `/config_dump`.
    pub fn dump(&self) -> Value {
        let clusters = self.clusters.read_unpoisoned().clone();
        let mut names: Vec<&String> = clusters.keys().collect();
        names.sort();
        let (mut cs, mut es) = (Vec::new(), Vec::new());
        for name in names {
            let set = &clusters[name];
            let cfg = &set.cfg;
            let l = cfg.limits;
            let mut c = json!({
                "name": name,
                "type": match &cfg.discovery {
                    Discovery::Assigned => "EDS",
                    Discovery::Dns(d) if d.logical => "LOGICAL_DNS",
                    Discovery::Dns(_) => "STRICT_DNS",
                    Discovery::OriginalDst(_) => "ORIGINAL_DST",
                },
                "lb": cfg.lb.name(),
                "protocol": format!("{:?}", cfg.pool.protocol),
                "connect_timeout_ms": cfg.pool.connect_timeout.as_millis() as u64,
                "max_requests_per_connection": cfg.pool.max_requests_per_connection,
                "healthy_panic_threshold": cfg.healthy_panic_threshold,
                "circuit_breakers": {
                    "max_connections": l.max_connections,
                    "max_pending_requests": l.max_pending_requests,
                    "max_requests": l.max_requests,
                    "max_retries": l.max_retries,
                },
                "overflows": {
                    "max_connections": set.breaker.overflows(Resource::Connections),
                    "max_pending_requests": set.breaker.overflows(Resource::Pending),
                    "max_requests": set.breaker.overflows(Resource::Requests),
                    "max_retries": set.breaker.overflows(Resource::Retries),
                },
            });
            if let Some(t) = &cfg.tls {
                c["tls"] = json!({ "sni": t.sni, "alpn": t.alpn });
            }
            if let Some(o) = &cfg.outlier {
                c["outlier_detection"] = json!({
                    "consecutive_5xx": o.consecutive_5xx,
                    "consecutive_gateway_failure": o.consecutive_gateway_failure,
                    "enforcing_consecutive_5xx": o.enforcing_consecutive_5xx,
                    "enforcing_consecutive_gateway_failure": o.enforcing_consecutive_gateway_failure,
                    "interval_ms": o.interval.as_millis() as u64,
                    "base_ejection_ms": o.base_ejection_time.as_millis() as u64,
                    "max_ejection_ms": o.max_ejection_time.as_millis() as u64,
                    "max_ejection_percent": o.max_ejection_percent,
                });
            }
            cs.push(c);
            for e in &set.endpoints {
                es.push(json!({
                    "cluster": name,
                    "address": e.addr.to_string(),
                    "health": if set.is_ejected(&e.addr) { "EJECTED" } else { "HEALTHY" },
                    "workload": e.workload.as_deref().unwrap_or(""),
                    "hbone": matches!(e.route, Route::Hbone { .. }),
                    "tls": matches!(e.route, Route::Tls(_)),
                    "active_requests": e.active.load(Ordering::Relaxed),
                    "connections": e.pool.open_connections(),
                    "ejections": set.total_ejections(&e.addr),
                }));
            }
        }
        json!({ "clusters": cs, "endpoints": es })
    }
}

impl Upstream for ClusterManager {
    fn send(
        &self,
        cluster: &str,
        req: Request<Body>,
        ctx: SendContext,
    ) -> BoxFuture<'static, Result<UpstreamResponse, UpstreamError>> {
        let Some(set) = self.cluster(cluster) else {
            let name = cluster.to_string();
            return Box::pin(async move { Err(UpstreamError::UnknownCluster(name)) });
        };
        let (connector, metrics) = (self.connector.clone(), self.metrics.clone());
        // A DNS cluster not resolved yet: wait for its first round (as
        // Envoy warms a cluster), up to the connect timeout.
        if let Some(mut ready) = set.dns_ready.clone().filter(|r| !*r.borrow()) {
            let (me, name) = (self.me.clone(), cluster.to_string());
            return Box::pin(async move {
                let wait = set.cfg.pool.connect_timeout;
                let _ = tokio::time::timeout(wait, ready.wait_for(|r| *r)).await;
                let set = me.upgrade().and_then(|m| m.cluster(&name)).unwrap_or(set);
                set.send(req, ctx, connector, metrics).await
            });
        }
        Box::pin(set.send(req, ctx, connector, metrics))
    }

    fn retry_permit(&self, cluster: &str) -> Option<RetryPermit> {
        let set = self.cluster(cluster)?;
        match set.breaker.try_acquire(Resource::Retries) {
            Some(g) => Some(RetryPermit(Box::new(g))),
            None => {
                self.metrics
                    .overflow
                    .get_or_create(&OverflowLabels {
                        cluster: cluster.to_string(),
                        breaker: Resource::Retries.name().to_string(),
                    })
                    .inc();
                None
            }
        }
    }
}

/// Endpoints without a workload (plain hosts).
fn plain_endpoints(addrs: Vec<SocketAddr>) -> Vec<EndpointConfig> {
    addrs
        .into_iter()
        .map(|addr| EndpointConfig {
            addr,
            workload_uid: None,
        })
        .collect()
}

/// [`validate`], and a cluster's TLS context must build: its CA, client
/// certificate and key files (SDS names in `external.credential_dir`)
/// must exist and parse.
pub fn validate_with(
    type_url: &str,
    r: &XdsResource,
    external: &ExternalOptions,
) -> Result<(), FieldRejection> {
    validate(type_url, r)?;
    if let XdsResource::Cluster(c) = r {
        if let Some(spec) = ClusterConfig::from_proto(c)?.tls {
            TlsOrigin::build(&spec, &external.credential_dir)?;
        }
    }
    Ok(())
}

/// Checks Cluster / ClusterLoadAssignment resources (for the xDS
/// Validator) without reading files; other types pass.
pub fn validate(type_url: &str, r: &XdsResource) -> Result<(), FieldRejection> {
    match (type_url, r) {
        (CLUSTER_TYPE_URL, XdsResource::Cluster(c)) => {
            let cfg = ClusterConfig::from_proto(c)?;
            // DNS clusters' names were checked by `from_proto`.
            if let (Discovery::Assigned, Some(cla)) = (&cfg.discovery, &c.load_assignment) {
                endpoints(cla).map_err(|(f, r)| (format!("load_assignment.{f}"), r))?;
            }
            Ok(())
        }
        (ENDPOINT_TYPE_URL, XdsResource::ClusterLoadAssignment(c)) => {
            if c.cluster_name.is_empty() {
                return Err(("cluster_name".into(), "empty".into()));
            }
            endpoints(c).map(|_| ())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::cluster::tests::cla;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;

    #[test]
    fn validate_names_the_bad_field() {
        let bad = Cluster {
            name: "c".into(),
            lb_policy: LbPolicy::ClusterProvided as i32,
            ..Default::default()
        };
        assert_eq!(
            validate(CLUSTER_TYPE_URL, &XdsResource::Cluster(Box::new(bad)))
                .unwrap_err()
                .0,
            "lb_policy"
        );
        let mut inline = Cluster {
            name: "c".into(),
            load_assignment: Some(cla("c", &["10.0.0.1:80".parse().unwrap()])),
            ..Default::default()
        };
        assert!(validate(
            CLUSTER_TYPE_URL,
            &XdsResource::Cluster(Box::new(inline.clone()))
        )
        .is_ok());
        inline.load_assignment.as_mut().unwrap().endpoints[0].lb_endpoints[0].host_identifier =
            None;
        assert_eq!(
            validate(CLUSTER_TYPE_URL, &XdsResource::Cluster(Box::new(inline)))
                .unwrap_err()
                .0,
            "load_assignment.endpoints[0].lb_endpoints[0].endpoint"
        );
        let unnamed = cla("", &[]);
        assert_eq!(
            validate(
                ENDPOINT_TYPE_URL,
                &XdsResource::ClusterLoadAssignment(Box::new(unnamed))
            )
            .unwrap_err()
            .0,
            "cluster_name"
        );
        let ok = cla("c", &["10.0.0.1:80".parse().unwrap()]);
        assert!(validate(
            ENDPOINT_TYPE_URL,
            &XdsResource::ClusterLoadAssignment(Box::new(ok))
        )
        .is_ok());
    }

    /// Panics while holding `lock`'s guard, poisoning it.
    fn poison<T: Send + Sync>(lock: &std::sync::RwLock<T>) {
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _guard = lock.write();
                    panic!("poisoning the lock on purpose");
                })
                .join();
        });
        assert!(lock.is_poisoned());
    }

    #[test]
    fn a_poisoned_lock_does_not_break_later_calls() {
        let cm = ClusterManager::new(UpstreamOptions::default());
        cm.set_endpoints("c", vec!["10.0.0.1:80".parse().unwrap()]);
        poison(&cm.clusters);
        poison(&cm.directory);
        assert!(cm.retry_permit("c").is_some());
        assert_eq!(cm.directory().workloads(), 0);
        assert_eq!(cm.dump()["clusters"].as_array().unwrap().len(), 1);
        cm.apply(&XdsSnapshot::default());
        assert!(cm.dump()["clusters"].as_array().unwrap().is_empty());
    }

    #[test]
    fn an_empty_snapshot_removes_every_cluster() {
        let cm = ClusterManager::new(UpstreamOptions::default());
        cm.set_endpoints("c", vec!["10.0.0.1:80".parse().unwrap()]);
        assert_eq!(cm.dump()["clusters"].as_array().unwrap().len(), 1);
        cm.apply(&XdsSnapshot::default());
        assert!(cm.dump()["clusters"].as_array().unwrap().is_empty());
        assert_eq!(cm.directory().workloads(), 0);
        assert!(cm.retry_permit("c").is_none());
    }
}
