//! L4 authorization (hop ④): which Istio workload authorization policies
//! apply to a destination workload, the verdict for a connection, and the
//! enforcement that follows from it:
//!
//! - [`eval`]: Istio's evaluation order and ztunnel's matching rules;
//! - [`live`]: open connections to local pods, closed when a policy change
//!   stops allowing them;
//! - [`kernel`]: DENY rules that depend only on facts the kernel knows at
//!   `connect()` (the local source pod's identity, destination ip/port),
//!   compiled into the `deny_connect` map so such traffic never reaches a
//!   proxy; and pods that no plaintext client may reach, for `strict_pods`.
//!
//! Policies are enforced where the destination pod lives: by the inbound
//! HBONE server, and by the outbound proxy for same-node delivery (the
//! agent is both ends there). Traffic to pods outside the mesh is not
//! subject to policy, as in Istio.
pub mod eval;
pub mod kernel;
pub mod live;

use std::{collections::HashMap, sync::Arc};

use mesh_xds::proto::istio_security::{Authorization, Scope};

use crate::state::view::WorkloadInfo;

pub use eval::{Conn, Evaluation, Verdict};

/// Every authorization policy the control plane sent, by `<ns>/<name>`.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    by_name: HashMap<String, Arc<Authorization>>,
    /// GLOBAL and NAMESPACE policies, which apply without being listed.
    broad: Vec<Arc<Authorization>>,
}

impl PolicySet {
    pub fn new(policies: impl IntoIterator<Item = Authorization>) -> Self {
        let mut set = PolicySet::default();
        for p in policies {
            let p = Arc::new(p);
            if p.scope != Scope::WorkloadSelector as i32 {
                set.broad.push(Arc::clone(&p));
            }
            set.by_name.insert(eval::policy_name(&p), p);
        }
        // Deterministic order: the first matching DENY names the verdict.
        set.broad.sort_by_key(|p| eval::policy_name(p));
        set
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn all(&self) -> impl Iterator<Item = &Authorization> {
        self.by_name.values().map(|p| &**p)
    }

    /// The policies that apply to `w`: mesh-wide ones, those of its
    /// namespace, and the selector policies it lists.
    pub fn applicable<'a>(&'a self, w: &'a WorkloadInfo) -> Vec<&'a Authorization> {
        let mut out: Vec<&Authorization> = self
            .broad
            .iter()
            .filter(|p| p.scope == Scope::Global as i32 || p.namespace == w.namespace)
            .map(|p| &**p)
            .collect();
        out.extend(
            w.authorization_policies
                .iter()
                .filter_map(|name| self.by_name.get(name))
                .filter(|p| p.scope == Scope::WorkloadSelector as i32)
                .map(|p| &**p),
        );
        out
    }

    /// The verdict for a connection to `dst`.
    pub fn evaluate(&self, dst: &WorkloadInfo, conn: &Conn<'_>) -> Evaluation {
        eval::evaluate(self.applicable(dst), conn)
    }
}

/// Logs what an evaluation decided (denials at info, audits at info with
/// their own message, dry-run "would deny" at info).
pub fn log(evaluation: &Evaluation, dst: &WorkloadInfo, conn: &Conn<'_>, path: &'static str) {
    let src = conn.src.map(ToString::to_string).unwrap_or_default();
    let src_ip = conn.src_ip.map(|ip| ip.to_string()).unwrap_or_default();
    if let Verdict::Deny { policy } = &evaluation.verdict {
        tracing::info!(
            %policy, path, source = %src, source_ip = %src_ip,
            destination = %dst.uid, dst_ip = %conn.dst_ip, dst_port = conn.dst_port,
            "connection denied by authorization policy"
        );
    }
    for policy in &evaluation.audited {
        tracing::info!(
            %policy, path, source = %src, source_ip = %src_ip,
            destination = %dst.uid, dst_port = conn.dst_port,
            "AUDIT policy matched"
        );
    }
    for policy in &evaluation.dry_run_denials {
        tracing::info!(
            %policy, path, source = %src, source_ip = %src_ip,
            destination = %dst.uid, dst_port = conn.dst_port,
            "dry-run: would deny"
        );
    }
}
