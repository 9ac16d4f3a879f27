//! Workload certificates for the mesh pods of this node: a key and a CSR per
//! identity, signed by the mesh CA (Istio's `CreateCertificate`), kept in the
//! HBONE certificate store, renewed at half-life. A renewed certificate is
//! used by new handshakes; open connections keep theirs.
//!
//! Identities are fetched concurrently (at most
//! [`CaSettings::concurrency`] at once), each request under a deadline
//! ([`super::ca_client`]); an identity whose fetch failed waits a jittered,
//! doubling delay before its next try, so a failing CA is not hammered and
//! one slow identity does not hold up the others.
use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::{Duration, SystemTime},
};

use mesh_hbone::{ca_client::renewal_due, CertStore, Identity, WorkloadCert};
use rand::Rng as _;
use tokio::{sync::watch, task::JoinSet, time::Instant};

use super::ca_client::{CaClient, CaSettings, FetchError};
use crate::state::view::MeshView;

pub use mesh_hbone::ca_client::IssueError as CertError;

#[cfg(test)]
mod tests;

pub struct CertManager {
    pub store: Arc<CertStore>,
    pub ca: Arc<CaClient>,
    pub ttl: Duration,
    pub issued: Arc<std::sync::atomic::AtomicU64>,
    /// The agent's ServiceAccount token, for the CA's TokenReview.
    pub token: Option<mesh_xds::token::TokenFile>,
    /// Answers refused because the certificate names another identity
    /// than the one asked for (a CA that ignored the impersonation).
    pub wrong_identity: Arc<std::sync::atomic::AtomicU64>,
}

/// How often held certificates are checked for renewal.
const RENEWAL_CHECK: Duration = Duration::from_secs(1);

/// Failures of one identity in a row, and when it may be tried again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    failures: u32,
    at: Instant,
}

/// `min · 2^(failures-1)`, capped at `max`, then a random 50–100 % of it so
/// the agents of many nodes do not retry in step.
fn backoff(settings: &CaSettings, failures: u32) -> Duration {
    let exp = settings
        .backoff_min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(settings.backoff_max);
    exp.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

type Fetched = (Identity, Result<WorkloadCert, FetchError>);

impl CertManager {
    /// Keeps the store equal to the identities of this node's mesh pods.
    pub async fn run(self, mut view: watch::Receiver<Arc<MeshView>>) {
        let settings = self.ca.settings().clone();
        let mut retries: HashMap<Identity, Retry> = HashMap::new();
        let mut in_flight: BTreeSet<Identity> = BTreeSet::new();
        let mut fetches: JoinSet<Fetched> = JoinSet::new();
        loop {
            let wanted: BTreeSet<Identity> = view
                .borrow()
                .local_workloads()
                .map(|w| w.identity.clone())
                .collect();
            for stale in self
                .store
                .identities()
                .into_iter()
                .filter(|id| !wanted.contains(id))
            {
                self.store.remove(&stale);
                tracing::info!(identity = %stale, "certificate dropped: no local workload uses it");
            }
            retries.retain(|id, _| wanted.contains(id));
            let (now, wall) = (Instant::now(), SystemTime::now());
            for identity in &wanted {
                if in_flight.len() >= settings.concurrency.max(1) {
                    break;
                }
                let current = self
                    .store
                    .get(identity)
                    .is_some_and(|c| !renewal_due(&c, wall));
                let waiting = retries.get(identity).is_some_and(|r| r.at > now);
                if current || waiting || in_flight.contains(identity) {
                    continue;
                }
                in_flight.insert(identity.clone());
                let (ca, id, ttl, token) = (
                    Arc::clone(&self.ca),
                    identity.clone(),
                    self.ttl,
                    self.token.clone(),
                );
                fetches.spawn(async move {
                    let result = ca.issue(&id, ttl, token.as_ref()).await;
                    (id, result)
                });
            }
            let next_retry = retries
                .values()
                .map(|r| r.at)
                .filter(|at| *at > now)
                .min()
                .unwrap_or(now + RENEWAL_CHECK)
                .min(now + RENEWAL_CHECK);
            tokio::select! {
                changed = view.changed() => if changed.is_err() { return },
                Some(done) = fetches.join_next(), if !fetches.is_empty() => {
                    let Ok((identity, result)) = done else { continue };
                    in_flight.remove(&identity);
                    let still_wanted = view.borrow().local_workloads().any(|w| w.identity == identity);
                    self.finished(identity, result, &settings, &mut retries, still_wanted);
                }
                () = tokio::time::sleep_until(next_retry) => {}
            }
        }
    }

    fn finished(
        &self,
        identity: Identity,
        result: Result<WorkloadCert, FetchError>,
        settings: &CaSettings,
        retries: &mut HashMap<Identity, Retry>,
        still_wanted: bool,
    ) {
        match result {
            Ok(cert) => {
                retries.remove(&identity);
                tracing::info!(identity = %identity, serial = cert.serial(), "workload certificate issued");
                // A fetch that raced with the pod leaving is not kept.
                if still_wanted {
                    self.store.insert(cert);
                }
                self.issued
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(error) => {
                let failures = retries.get(&identity).map_or(1, |r| r.failures + 1);
                let delay = backoff(settings, failures);
                retries.insert(
                    identity.clone(),
                    Retry {
                        failures,
                        at: Instant::now() + delay,
                    },
                );
                if let FetchError::Issue(CertError::WrongIdentity { got, .. }) = &error {
                    self.wrong_identity
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(%identity, signed_for = %got, failures, retry_in = ?delay,
                        "the CA signed another identity than the one asked for (does it trust this agent's account as a node agent, e.g. CA_TRUSTED_NODE_ACCOUNTS?): certificate discarded");
                    return;
                }
                tracing::warn!(%identity, %error, failures, retry_in = ?delay, "certificate request failed");
            }
        }
    }
}
