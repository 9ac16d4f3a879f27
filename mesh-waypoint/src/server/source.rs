//! The source address of a tunnelled request, verified: the address the
//! client's agent names in `forwarded: for=` (else the TCP peer) counts
//! only when the Address view knows it as a workload whose identity is
//! the mTLS peer's. An agent speaks for its own pods only, so a peer
//! cannot borrow another workload's address to pass an ALLOW or dodge a
//! DENY. An address that cannot be verified (unknown to the view, or
//! another identity's) is no address at all: IP conditions then count as
//! unknown (see [`RbacRules::allows`](crate::config::rbac::RbacRules::allows)).
use std::{net::IpAddr, sync::Arc};

use mesh_hbone::Identity;

use crate::upstream::{ClusterManager, Directory};

/// The waypoint's view of workloads by address (Istio's Address xDS).
pub trait Workloads: Send + Sync + 'static {
    fn directory(&self) -> Arc<Directory>;
}

impl Workloads for ClusterManager {
    fn directory(&self) -> Arc<Directory> {
        ClusterManager::directory(self)
    }
}

/// `claimed` when `dir` knows it as a workload of identity `peer`.
pub fn verified_source(dir: &Directory, peer: &Identity, claimed: IpAddr) -> Option<IpAddr> {
    let w = dir.workload_by_ip(claimed)?;
    (w.identity.as_ref() == Some(peer)).then_some(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{directory::tests::workload, WorkloadEntry};

    #[test]
    fn only_the_peers_own_workload_address_counts() {
        let w = WorkloadEntry::from_proto("r", &workload("uid-1", [10, 0, 0, 5], true, None));
        let dir = Directory::build([w], []);
        let sleep: Identity = "spiffe://cluster.local/ns/default/sa/reviews"
            .parse()
            .unwrap();
        let other: Identity = "spiffe://cluster.local/ns/default/sa/other"
            .parse()
            .unwrap();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(verified_source(&dir, &sleep, ip), Some(ip));
        assert_eq!(verified_source(&dir, &other, ip), None);
        assert_eq!(
            verified_source(&dir, &sleep, "10.0.0.6".parse().unwrap()),
            None
        );
        assert_eq!(verified_source(&Directory::default(), &sleep, ip), None);
    }
}
