//! Hop ④ for same-node delivery: the outbound proxy routed a connection to
//! a mesh pod of this node (crate::route), so this agent is also the
//! destination's and authorizes it here, on the view the route came from.
use std::net::SocketAddr;

use mesh_hbone::Identity;

use crate::{
    policy::{Conn, Verdict},
    state::{outcome::ConnError, view::MeshView},
};

/// Who the two ends of an allowed same-node connection are.
pub struct Allowed {
    /// The client pod's identity, when it is a mesh workload.
    pub source: Option<Identity>,
    /// The destination pod's identity, when the view knows it.
    pub destination: Option<Identity>,
    /// The decision is a function of (source pod, destination address and
    /// port) alone under this view: a mesh source, a known destination, no
    /// AUDIT or dry-run policy that wants to see every connection. Only
    /// such a pair may take the same-node fast path.
    pub cacheable: bool,
}

/// Evaluates the destination's authorization policies for a connection
/// from `peer` to `target`: who the ends are, or [`ConnError::Denied`].
pub fn authorize(
    view: &MeshView,
    peer: SocketAddr,
    target: SocketAddr,
) -> Result<Allowed, ConnError> {
    let Some(dst) = view.workload_by_ip(target.ip()) else {
        return Ok(Allowed {
            source: None,
            destination: None,
            cacheable: false,
        });
    };
    let src = view
        .workload_by_ip(peer.ip())
        .filter(|w| w.mesh)
        .map(|w| w.identity.clone());
    let conn = Conn {
        src_ip: Some(peer.ip()),
        src: src.as_ref(),
        dst_ip: target.ip(),
        dst_port: target.port(),
    };
    let evaluation = view.policies.evaluate(dst, &conn);
    crate::policy::log(&evaluation, dst, &conn, "local");
    match evaluation.verdict {
        Verdict::Allow => Ok(Allowed {
            cacheable: src.is_some()
                && evaluation.audited.is_empty()
                && evaluation.dry_run_denials.is_empty(),
            source: src,
            destination: Some(dst.identity.clone()),
        }),
        Verdict::Deny { policy } => Err(ConnError::Denied { policy }),
    }
}
