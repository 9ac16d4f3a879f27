//! Envoy circuit breakers of one cluster: counters of open connections,
//! requests waiting for a connection, active requests and active retries,
//! each held by an RAII guard and refused past its threshold.
use std::sync::{
    atomic::{AtomicU32, AtomicU64, Ordering},
    Arc,
};

use super::cluster::Limits;

/// Which threshold a guard counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Connections,
    Pending,
    Requests,
    Retries,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::Connections => "max_connections",
            Resource::Pending => "max_pending_requests",
            Resource::Requests => "max_requests",
            Resource::Retries => "max_retries",
        }
    }
}

/// Counters and thresholds; thresholds change in place on a CDS update.
#[derive(Debug, Default)]
pub struct Breaker {
    limits: [AtomicU32; 4],
    current: [AtomicU32; 4],
    overflows: [AtomicU64; 4],
}

/// One unit of a resource, given back on drop.
#[derive(Debug)]
pub struct Guard {
    breaker: Arc<Breaker>,
    resource: Resource,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.breaker.current[self.resource as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

impl Breaker {
    pub fn new(limits: Limits) -> Arc<Self> {
        let b = Arc::new(Breaker::default());
        b.set_limits(limits);
        b
    }

    pub fn set_limits(&self, l: Limits) {
        for (r, v) in [
            (Resource::Connections, l.max_connections),
            (Resource::Pending, l.max_pending_requests),
            (Resource::Requests, l.max_requests),
            (Resource::Retries, l.max_retries),
        ] {
            self.limits[r as usize].store(v, Ordering::Relaxed);
        }
    }

    /// Takes one unit if the count is below the threshold; counts the
    /// overflow otherwise.
    pub fn try_acquire(self: &Arc<Self>, resource: Resource) -> Option<Guard> {
        let limit = self.limits[resource as usize].load(Ordering::Relaxed);
        let taken = self.current[resource as usize]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < limit).then_some(c + 1)
            })
            .is_ok();
        if !taken {
            self.overflows[resource as usize].fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Guard {
            breaker: Arc::clone(self),
            resource,
        })
    }

    /// Takes one unit regardless of the threshold (Envoy lets a host's pool
    /// open its first connection even over `max_connections`).
    pub fn force_acquire(self: &Arc<Self>, resource: Resource) -> Guard {
        self.current[resource as usize].fetch_add(1, Ordering::AcqRel);
        Guard {
            breaker: Arc::clone(self),
            resource,
        }
    }

    pub fn current(&self, resource: Resource) -> u32 {
        self.current[resource as usize].load(Ordering::Acquire)
    }

    pub fn limit(&self, resource: Resource) -> u32 {
        self.limits[resource as usize].load(Ordering::Relaxed)
    }

    pub fn overflows(&self, resource: Resource) -> u64 {
        self.overflows[resource as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_release() {
        let b = Breaker::new(Limits {
            max_connections: 1,
            max_pending_requests: 2,
            max_requests: 1,
            max_retries: 0,
        });
        let p1 = b.try_acquire(Resource::Pending).unwrap();
        let _p2 = b.try_acquire(Resource::Pending).unwrap();
        assert!(b.try_acquire(Resource::Pending).is_none());
        assert_eq!(b.overflows(Resource::Pending), 1);
        drop(p1);
        assert!(b.try_acquire(Resource::Pending).is_some());
        assert!(b.try_acquire(Resource::Retries).is_none());
        let _c = b.force_acquire(Resource::Connections);
        let _c2 = b.force_acquire(Resource::Connections);
        assert_eq!(b.current(Resource::Connections), 2);
        assert!(b.try_acquire(Resource::Connections).is_none());
        b.set_limits(Limits {
            max_connections: 3,
            ..Limits::default()
        });
        assert!(b.try_acquire(Resource::Connections).is_some());
    }
}
