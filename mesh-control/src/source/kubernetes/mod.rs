//! The Kubernetes source: watches the API server (the kinds of
//! [`resources::watched_kinds`]) and publishes the same [`SourceWatch`]
//! receivers as the directory source.
//!
//! - [`resources`]: the watched kinds as explicit `ApiResource`s (no
//!   discovery calls).
//! - [`watcher`]: one kube-runtime watcher per kind (relist after 410 Gone
//!   and errors, with backoff).
//! - [`store`]: objects by (kind, namespace, name) with resourceVersion.
//! - [`rebuild`]: objects → the directory source's documents → the same
//!   builder; a bad resource is rejected alone.
//! - [`reject`]: Events and `Accepted` status conditions for rejections.
//!
//! The first state is published once every kind's first list completed;
//! after that, changes are debounced ([`KubeSourceOptions::debounce`] of
//! quiet, at most [`KubeSourceOptions::max_delay`] after the first change)
//! so a relist of a thousand objects is one rebuild.
pub mod rebuild;
pub mod reject;
pub mod resources;
pub mod store;
pub mod watcher;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use kube::Client;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use self::{
    rebuild::Rebuilt,
    reject::Report,
    resources::WatchedKind,
    store::{Key, Store},
    watcher::Update,
};
use super::{published::publish_if_changed, RawResource, SourceConfig, SourceWatch};
use crate::model::MeshState;

/// Timing and behaviour of [`watch_kubernetes`].
#[derive(Debug, Clone)]
pub struct KubeSourceOptions {
    /// How long every kind gets to complete its first list.
    pub initial_list_timeout: Duration,
    /// Quiet time after the last change before rebuilding.
    pub debounce: Duration,
    /// Longest a change waits for quiet before a rebuild anyway.
    pub max_delay: Duration,
    /// Write Events and status conditions for rejected resources.
    pub report: bool,
}

impl Default for KubeSourceOptions {
    fn default() -> Self {
        KubeSourceOptions {
            initial_list_timeout: Duration::from_secs(30),
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            report: true,
        }
    }
}

/// Why the Kubernetes source did not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    /// Some kinds did not complete their first list in time.
    #[error("the Kubernetes source did not list {} within {timeout:?}{}", kinds.join(", "), detail(last_error))]
    NotListed {
        kinds: Vec<String>,
        timeout: Duration,
        last_error: Option<String>,
    },
    /// Everything listed, but no state could be built in time.
    #[error(
        "the Kubernetes source listed everything but built no state within {timeout:?}{}",
        detail(last_error)
    )]
    NoState {
        timeout: Duration,
        last_error: Option<String>,
    },
}

fn detail(last_error: &Option<String>) -> String {
    last_error
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

/// Starts watching every kind and returns once the first state is
/// published (or fails after [`KubeSourceOptions::initial_list_timeout`],
/// naming the kinds that did not list and their last error).
pub async fn watch_kubernetes(
    client: Client,
    config: SourceConfig,
    options: KubeSourceOptions,
) -> Result<SourceWatch, KubeSourceError> {
    let kinds = resources::watched_kinds();
    let (update_tx, update_rx) = mpsc::channel(1024);
    let mut tasks: Vec<_> = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| watcher::spawn(client.clone(), i, kind.clone(), update_tx.clone()))
        .collect();
    drop(update_tx);
    let reporter = if options.report {
        let (tx, task) = reject::spawn(client);
        tasks.push(task);
        Some(tx)
    } else {
        None
    };
    let (source, outputs) = SourceLoop::new(kinds, config, options.clone(), reporter);
    let mut progress = outputs.progress;
    tasks.push(tokio::spawn(source.run(update_rx)));
    let watch = SourceWatch::new(outputs.state, outputs.raw, outputs.last_error, tasks);
    let published = tokio::time::timeout(options.initial_list_timeout, async {
        progress.wait_for(|p| p.published).await.is_ok()
    })
    .await
    .unwrap_or(false);
    if published {
        return Ok(watch);
    }
    let progress = progress.borrow().clone();
    tracing::debug!(
        rebuilds = progress.rebuilds,
        unlisted = ?progress.unlisted,
        "the Kubernetes source did not start"
    );
    watch.stop();
    let timeout = options.initial_list_timeout;
    Err(if progress.unlisted.is_empty() {
        KubeSourceError::NoState {
            timeout,
            last_error: progress.last_error,
        }
    } else {
        KubeSourceError::NotListed {
            kinds: progress.unlisted,
            timeout,
            last_error: progress.last_error,
        }
    })
}

/// What the startup wait needs to know.
#[derive(Debug, Clone, Default)]
struct Progress {
    published: bool,
    /// Rebuilds so far (one per debounced burst of changes).
    rebuilds: u64,
    /// Kinds whose first list has not completed.
    unlisted: Vec<String>,
    last_error: Option<String>,
}

/// The task that owns the store and publishes.
struct SourceLoop {
    kinds: Vec<WatchedKind>,
    config: SourceConfig,
    options: KubeSourceOptions,
    store: Store,
    /// The versions in the published state.
    accepted: BTreeMap<Key, store::Stored>,
    /// Rejections reported, by the content they were reported for.
    reported: BTreeMap<Key, String>,
    /// Resources whose status says Accepted=False.
    status_false: BTreeSet<Key>,
    /// The Gateway API status last sent per object (without transition
    /// times), so only changes are written.
    gateway_api_sent: BTreeMap<Key, serde_json::Value>,
    /// The last published warnings, so each is logged once.
    warnings: Vec<String>,
    /// Last watch error per kind, until it lists.
    errors: BTreeMap<usize, String>,
    published: bool,
    rebuilds: u64,
    state_tx: watch::Sender<Arc<MeshState>>,
    raw_tx: watch::Sender<Arc<Vec<RawResource>>>,
    error_tx: watch::Sender<Option<String>>,
    progress_tx: watch::Sender<Progress>,
    reporter: Option<mpsc::UnboundedSender<Report>>,
}

/// The receiving ends of a [`SourceLoop`]'s outputs.
struct Outputs {
    state: watch::Receiver<Arc<MeshState>>,
    raw: watch::Receiver<Arc<Vec<RawResource>>>,
    last_error: watch::Receiver<Option<String>>,
    progress: watch::Receiver<Progress>,
}

impl SourceLoop {
    /// A loop that has seen nothing yet, and where it publishes.
    fn new(
        kinds: Vec<WatchedKind>,
        config: SourceConfig,
        options: KubeSourceOptions,
        reporter: Option<mpsc::UnboundedSender<Report>>,
    ) -> (Self, Outputs) {
        let (state_tx, state) = watch::channel(Arc::new(MeshState::default()));
        let (raw_tx, raw) = watch::channel(Arc::new(Vec::new()));
        let (error_tx, last_error) = watch::channel(None);
        let (progress_tx, progress) = watch::channel(Progress::default());
        let source = SourceLoop {
            kinds,
            config,
            options,
            store: Store::default(),
            accepted: BTreeMap::new(),
            reported: BTreeMap::new(),
            status_false: BTreeSet::new(),
            gateway_api_sent: BTreeMap::new(),
            warnings: vec![],
            errors: BTreeMap::new(),
            published: false,
            rebuilds: 0,
            state_tx,
            raw_tx,
            error_tx,
            progress_tx,
            reporter,
        };
        let outputs = Outputs {
            state,
            raw,
            last_error,
            progress,
        };
        (source, outputs)
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Update>) {
        self.progress();
        let mut first_change: Option<Instant> = None;
        loop {
            let ready = self.all_listed();
            let update = match first_change {
                Some(first) if ready => {
                    let quiet = self.options.debounce;
                    let deadline = (first + self.options.max_delay).min(Instant::now() + quiet);
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(update) => update,
                        Err(_) => {
                            first_change = None;
                            self.rebuild().await;
                            continue;
                        }
                    }
                }
                _ => rx.recv().await,
            };
            let Some(update) = update else {
                tracing::warn!("every Kubernetes watcher stopped");
                return;
            };
            let changed = match update {
                Update::Event { kind, event } => {
                    let resource = self.kinds[kind].resource.clone();
                    let changed = self.store.apply(kind, &resource, *event);
                    if self.store.listed(kind) && self.errors.remove(&kind).is_some() {
                        self.progress();
                    }
                    if changed && !self.published {
                        self.progress();
                    }
                    changed
                }
                Update::Error { kind, message } => {
                    self.errors
                        .insert(kind, format!("{}: {message}", self.kinds[kind].describe()));
                    self.progress();
                    false
                }
            };
            if changed && first_change.is_none() {
                first_change = Some(Instant::now());
            }
        }
    }

    fn all_listed(&self) -> bool {
        (0..self.kinds.len()).all(|k| self.store.listed(k))
    }

    fn progress(&self) {
        let unlisted = (0..self.kinds.len())
            .filter(|k| !self.store.listed(*k))
            .map(|k| self.kinds[k].describe())
            .collect();
        let last_error = self
            .errors
            .values()
            .last()
            .cloned()
            .or_else(|| self.error_tx.borrow().clone());
        self.progress_tx.send_replace(Progress {
            published: self.published,
            rebuilds: self.rebuilds,
            unlisted,
            last_error,
        });
    }

    async fn rebuild(&mut self) {
        self.rebuilds += 1;
        let objects = self.store.objects().clone();
        let accepted = self.accepted.clone();
        let config = self.config.clone();
        let built = tokio::task::spawn_blocking(move || {
            let rebuilt = rebuild::rebuild(&objects, &accepted, &config);
            (objects, rebuilt)
        })
        .await;
        let (objects, rebuilt) = match built {
            Ok(built) => built,
            Err(error) => {
                tracing::error!("rebuilding the mesh state panicked: {error}");
                return;
            }
        };
        let Rebuilt {
            snapshot,
            accepted,
            rejected,
            unattributed,
        } = rebuilt;
        self.report(&objects, &rejected, &accepted);
        let mut errors: Vec<String> = rejected
            .values()
            .flatten()
            .chain(&unattributed)
            .map(ToString::to_string)
            .collect();
        errors.dedup();
        for problem in &unattributed {
            tracing::error!("{problem}");
        }
        let Some(snapshot) = snapshot else {
            tracing::error!("Kubernetes state rejected; the previous state stays in force");
            self.error_tx.send_replace(Some(errors.join("\n")));
            self.progress();
            return;
        };
        self.accepted = accepted;
        for warning in &snapshot.warnings {
            if !self.warnings.contains(warning) {
                tracing::warn!("{warning}");
            }
        }
        self.warnings = snapshot.warnings.clone();
        self.report_gateway_api(&snapshot.gateway_api);
        let state = snapshot.state;
        let summary = (
            state.workloads.len(),
            state.services.len(),
            state.nodes.len(),
        );
        let changed = publish_if_changed(&self.state_tx, state);
        publish_if_changed(&self.raw_tx, snapshot.raw);
        let error = (!errors.is_empty()).then(|| errors.join("\n"));
        self.error_tx.send_if_modified(|current| {
            let differs = *current != error;
            *current = error;
            differs
        });
        if changed || !self.published {
            tracing::info!(
                objects = objects.len(),
                workloads = summary.0,
                services = summary.1,
                nodes = summary.2,
                rejected = rejected.len(),
                initial = !self.published,
                "Kubernetes state published"
            );
        }
        self.published = true;
        self.progress();
    }

    /// Logs and reports new rejections, and acceptance of resources whose
    /// status said otherwise.
    fn report(
        &mut self,
        objects: &BTreeMap<Key, store::Stored>,
        rejected: &BTreeMap<Key, Vec<crate::source::Problem>>,
        accepted: &BTreeMap<Key, store::Stored>,
    ) {
        // A resource no longer rejected is reported again if it regresses,
        // even to the very content reported before.
        self.reported
            .retain(|key, _| objects.contains_key(key) && rejected.contains_key(key));
        self.status_false.retain(|key| objects.contains_key(key));
        for (key, problems) in rejected {
            let Some(stored) = objects.get(key) else {
                continue;
            };
            let content = rebuild::content(key, stored);
            if self.reported.get(key) == Some(&content) {
                continue;
            }
            self.reported.insert(key.clone(), content);
            let message = problems
                .iter()
                .map(|p| {
                    if p.field.is_empty() {
                        p.message.clone()
                    } else {
                        format!("{}: {}", p.field, p.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            let fallback = if accepted.contains_key(key) {
                "its last accepted version keeps serving"
            } else {
                "it is left out"
            };
            tracing::error!(resource = %key, resource_version = %stored.resource_version, "rejected ({fallback}): {message}");
            let Some(kind) = self.kind_of(key).cloned() else {
                continue;
            };
            if kind.has_status {
                self.status_false.insert(key.clone());
            }
            if let Some(reporter) = &self.reporter {
                let _ = reporter.send(Report::Rejected {
                    key: key.clone(),
                    resource: kind.resource.clone(),
                    has_status: kind.has_status,
                    stored: stored.clone(),
                    message,
                });
            }
        }
        let now_accepted: Vec<Key> = self
            .status_false
            .iter()
            .filter(|key| !rejected.contains_key(*key) && accepted.get(*key) == objects.get(*key))
            .cloned()
            .collect();
        for key in now_accepted {
            self.status_false.remove(&key);
            self.reported.remove(&key);
            tracing::info!(resource = %key, "accepted again");
            let (Some(kind), Some(stored)) = (self.kind_of(&key), objects.get(&key)) else {
                continue;
            };
            if let Some(reporter) = &self.reporter {
                let _ = reporter.send(Report::Accepted {
                    key: key.clone(),
                    resource: kind.resource.clone(),
                    stored: stored.clone(),
                });
            }
        }
    }

    /// Sends the Gateway API status of every Gateway (class istio) and
    /// HTTPRoute whose status changed. A route none of whose parents is
    /// ours (another controller's Gateway) is left alone.
    fn report_gateway_api(&mut self, status: &super::gateway_api::status::Status) {
        let key = |kind: &str, namespace: &str, name: &str| Key {
            group: super::gateway_api::GROUP.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        };
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut current: BTreeMap<Key, (serde_json::Value, serde_json::Value)> = BTreeMap::new();
        for r in status.routes.iter().filter(|r| !r.parents.is_empty()) {
            current.insert(
                key("HTTPRoute", &r.namespace, &r.name),
                (r.status_json(""), r.status_json(&now)),
            );
        }
        for g in &status.gateways {
            current.insert(
                key("Gateway", &g.namespace, &g.name),
                (g.status_json(""), g.status_json(&now)),
            );
        }
        self.gateway_api_sent.retain(|k, _| current.contains_key(k));
        for (k, (content, status)) in current {
            if self.gateway_api_sent.get(&k) == Some(&content) {
                continue;
            }
            let (Some(kind), Some(reporter)) = (self.kind_of(&k), &self.reporter) else {
                continue;
            };
            let _ = reporter.send(Report::GatewayApi {
                key: k.clone(),
                resource: kind.resource.clone(),
                status,
            });
            self.gateway_api_sent.insert(k, content);
        }
    }

    fn kind_of(&self, key: &Key) -> Option<&WatchedKind> {
        self.kinds
            .iter()
            .find(|k| k.resource.group == key.group && k.resource.kind == key.kind)
    }
}

#[cfg(test)]
mod tests;
