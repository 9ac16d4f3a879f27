//! The request metrics' series of recent label sets, resolved once: a
//! finished request looks up its few raw facts (source, destination
//! workload, service, protocol, status, flags) instead of building the
//! two dozen label strings and hashing them into four families.
//!
//! The labels depend on the Address view ([`Directory`]) too; the cache
//! belongs to one directory and starts over when another arrives. It is
//! bounded: past [`MAX_ENTRIES`] label sets it starts over as well (the
//! families keep every series; only the shortcut is lost).
use std::{collections::HashMap, hash::BuildHasher, net::IpAddr, sync::Arc};

use super::{labels::RequestLabels, metrics::Series, record::RequestRecord};
use crate::upstream::Directory;

/// Label sets kept before the cache starts over.
pub const MAX_ENTRIES: usize = 4096;

/// What decides a request's labels besides the directory, borrowed from
/// the record. The source address counts only where the source side is
/// looked up by it (`by_ip`: a waypoint reports the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key<'a> {
    principal: Option<&'a str>,
    ip: Option<IpAddr>,
    workload: Option<&'a str>,
    service: Option<&'a str>,
    protocol: &'static str,
    status: u16,
    grpc_status: Option<i32>,
    flags: &'a str,
}

impl<'a> Key<'a> {
    fn of(r: &'a RequestRecord, by_ip: bool) -> Self {
        Key {
            principal: r.source.principal.as_deref(),
            ip: r.source.ip.filter(|_| by_ip),
            workload: r.workload.as_deref(),
            service: r.service.as_deref(),
            protocol: r.protocol,
            status: r.status,
            grpc_status: r.grpc_status,
            flags: &r.flags,
        }
    }
}

/// [`Key`] owned.
#[derive(Debug)]
struct OwnedKey {
    principal: Option<String>,
    ip: Option<IpAddr>,
    workload: Option<Arc<str>>,
    service: Option<Arc<str>>,
    protocol: &'static str,
    status: u16,
    grpc_status: Option<i32>,
    flags: String,
}

impl OwnedKey {
    fn new(k: &Key<'_>) -> Self {
        OwnedKey {
            principal: k.principal.map(str::to_string),
            ip: k.ip,
            workload: k.workload.map(Arc::from),
            service: k.service.map(Arc::from),
            protocol: k.protocol,
            status: k.status,
            grpc_status: k.grpc_status,
            flags: k.flags.to_string(),
        }
    }

    fn borrow(&self) -> Key<'_> {
        Key {
            principal: self.principal.as_deref(),
            ip: self.ip,
            workload: self.workload.as_deref(),
            service: self.service.as_deref(),
            protocol: self.protocol,
            status: self.status,
            grpc_status: self.grpc_status,
            flags: &self.flags,
        }
    }
}

/// A label set and its series.
pub struct Resolved {
    pub labels: RequestLabels,
    pub series: Series,
}

#[derive(Default)]
pub struct SeriesCache {
    /// The directory the entries were resolved with.
    dir: Option<Arc<Directory>>,
    hasher: std::collections::hash_map::RandomState,
    /// By the key's hash; a bucket holds the keys that share it.
    entries: HashMap<u64, Vec<(OwnedKey, Arc<Resolved>)>>,
    len: usize,
}

impl SeriesCache {
    /// The labels and series of `r` under `dir`: cached, or from `resolve`.
    pub fn get(
        &mut self,
        r: &RequestRecord,
        by_ip: bool,
        dir: &Arc<Directory>,
        resolve: impl FnOnce() -> Resolved,
    ) -> Arc<Resolved> {
        if !self.dir.as_ref().is_some_and(|d| Arc::ptr_eq(d, dir)) || self.len >= MAX_ENTRIES {
            self.entries.clear();
            self.len = 0;
            self.dir = Some(Arc::clone(dir));
        }
        let key = Key::of(r, by_ip);
        let bucket = self.entries.entry(self.hasher.hash_one(key)).or_default();
        if let Some((_, hit)) = bucket.iter().find(|(k, _)| k.borrow() == key) {
            return Arc::clone(hit);
        }
        let resolved = Arc::new(resolve());
        bucket.push((OwnedKey::new(&key), Arc::clone(&resolved)));
        self.len += 1;
        resolved
    }

    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.len
    }
}
