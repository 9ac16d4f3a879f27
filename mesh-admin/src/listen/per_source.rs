//! Open connections counted per source IP.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

#[derive(Debug)]
pub(super) struct PerSource {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection of `ip`; released on drop.
#[derive(Debug)]
pub(super) struct SourceSlot {
    owner: Arc<PerSource>,
    ip: IpAddr,
}

impl PerSource {
    pub(super) fn new(max: usize) -> Self {
        PerSource {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `ip`, or `None` when it already holds `max`.
    pub(super) fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            owner: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
