//! `GET /stats/mesh`: what the mesh side holds — xDS state, workloads known,
//! policies, kernel denies, certificates. Field names are part of the
//! agent's admin contract (docs/contracts/agent-admin.md).
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::state::runtime::MeshRuntime;

/// The `/stats/mesh` document.
pub fn mesh_stats(mesh: &MeshRuntime) -> Value {
    // Read before the view, so the kernel is never shown ahead of the view
    // whose generation is shown beside it.
    let kernel_generation = mesh.policy_generations.kernel();
    let view = mesh.view.borrow().clone();
    let snapshot = mesh.xds.borrow().clone();
    let certs: Vec<Value> = mesh
        .store
        .identities()
        .iter()
        .filter_map(|id| mesh.store.get(id))
        .map(|c| {
            let expires = c
                .not_after()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            json!({
                "identity": c.identity().to_string(),
                "serial": c.serial(),
                "not_after_unix": expires,
            })
        })
        .collect();
    let workloads: Vec<Value> = view
        .workloads()
        .map(|w| {
            json!({
                "uid": w.uid, "identity": w.identity.to_string(), "node": w.node,
                "ips": w.ips, "mesh": w.mesh,
            })
        })
        .collect();
    let mut policies: Vec<String> = view
        .policies
        .all()
        .map(crate::policy::eval::policy_name)
        .collect();
    policies.sort();
    json!({
        "node": view.node,
        "policies": policies,
        "kernel_denies": kernel_denies(mesh),
        "live_connections": mesh.live.len(),
        "closed_by_policy": mesh.live.closed(),
        "kernel_policy_generation": kernel_generation,
        "policy_generation": view.generation,
        "xds_connected": snapshot.connected,
        "xds_last_error": snapshot.last_error,
        "workloads": workloads,
        "services": view.service_count(),
        "certificates": certs,
        "certificates_issued": mesh.issued.load(Ordering::Relaxed),
        "certificates_refused": mesh.wrong_identity.load(Ordering::Relaxed),
    })
}

/// What the kernel enforces at `connect()`, and why (crate::policy::kernel).
pub fn kernel_denies(mesh: &MeshRuntime) -> Value {
    let denies: Vec<Value> = mesh
        .kernel_denies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|d| {
            json!({
                "netns_cookie": d.key.netns_cookie,
                "destination": crate::capture::enroll::unmapped(d.key.addr),
                "port": d.key.port,
                "policy": d.policy,
            })
        })
        .collect();
    Value::Array(denies)
}
