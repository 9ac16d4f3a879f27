//! The certificate store shared by HBONE clients and servers: the current
//! certificate of every local identity plus the trust bundle.
//!
//! Rotation is a pointer swap. TLS configs read the store at handshake time,
//! so new handshakes use the new certificate at once, while established
//! connections keep the keys they negotiated with.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use crate::certs::{TrustBundle, WorkloadCert};
use crate::identity::{sni_for, Identity};

/// Thread-safe map `Identity -> Arc<WorkloadCert>`, indexed by SNI too.
#[derive(Debug)]
pub struct CertStore {
    inner: RwLock<Inner>,
}

#[derive(Debug)]
struct Inner {
    certs: HashMap<Identity, Arc<WorkloadCert>>,
    by_sni: HashMap<String, Identity>,
    bundle: Arc<TrustBundle>,
}

impl CertStore {
    pub fn new(bundle: TrustBundle) -> Self {
        CertStore {
            inner: RwLock::new(Inner {
                certs: HashMap::new(),
                by_sni: HashMap::new(),
                bundle: Arc::new(bundle),
            }),
        }
    }

    // A panic while holding the lock leaves the maps consistent (every
    // update is a single insert/remove pair), so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn trust_bundle(&self) -> Arc<TrustBundle> {
        self.read().bundle.clone()
    }

    /// Replaces the trust bundle; applies to handshakes that start afterwards.
    pub fn set_trust_bundle(&self, bundle: TrustBundle) {
        self.write().bundle = Arc::new(bundle);
    }

    /// Inserts `cert` under its own identity, replacing (rotating) and
    /// returning the previous one.
    pub fn insert(&self, cert: WorkloadCert) -> Option<Arc<WorkloadCert>> {
        let identity = cert.identity().clone();
        let sni = sni_for(&identity);
        let mut inner = self.write();
        inner.by_sni.insert(sni, identity.clone());
        inner.certs.insert(identity, Arc::new(cert))
    }

    /// Alias of [`CertStore::insert`] for call sites that rotate.
    pub fn replace(&self, cert: WorkloadCert) -> Option<Arc<WorkloadCert>> {
        self.insert(cert)
    }

    pub fn get(&self, identity: &Identity) -> Option<Arc<WorkloadCert>> {
        self.read().certs.get(identity).cloned()
    }

    pub fn remove(&self, identity: &Identity) -> Option<Arc<WorkloadCert>> {
        let mut inner = self.write();
        inner.by_sni.remove(&sni_for(identity));
        inner.certs.remove(identity)
    }

    /// The identity whose [`sni_for`] is `sni`, if its certificate is here.
    pub fn identity_for_sni(&self, sni: &str) -> Option<Identity> {
        self.read().by_sni.get(sni).cloned()
    }

    /// The certificate a server presents for `sni`.
    pub fn get_by_sni(&self, sni: &str) -> Option<Arc<WorkloadCert>> {
        let inner = self.read();
        inner
            .by_sni
            .get(sni)
            .and_then(|id| inner.certs.get(id))
            .cloned()
    }

    pub fn identities(&self) -> Vec<Identity> {
        self.read().certs.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Certificates whose `not_after` is within `window` from now (including
    /// already expired ones), soonest first: the ones to renew.
    pub fn expiring_within(&self, window: Duration) -> Vec<Arc<WorkloadCert>> {
        let deadline = SystemTime::now() + window;
        let mut due: Vec<_> = self
            .read()
            .certs
            .values()
            .filter(|c| c.not_after() <= deadline)
            .cloned()
            .collect();
        due.sort_by_key(|c| c.not_after());
        due
    }
}
