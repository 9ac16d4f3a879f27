//! Watched objects → the directory source's [`Document`]s → one
//! [`load_documents`], so both sources build the `MeshState` (and hence
//! the xDS) with the same code.
//!
//! Unlike the directory, a cluster is not all or nothing: a problem that
//! names a resource rejects that resource alone. Its last accepted
//! version is put back (or it is left out if it never had one) and the
//! load is repeated, so the rest of the cluster is published. Every round
//! removes or downgrades at least one object, so the loop ends within
//! `2 × objects + 1` rounds; a problem that names no watched resource
//! stops it and the previous state keeps serving.
use std::collections::{BTreeMap, BTreeSet};

use super::store::{Key, Stored};
use crate::source::{documents::Document, load_documents, Problem, Snapshot, SourceConfig};

/// The pseudo file name of every Kubernetes document (what problems and
/// warnings say instead of a file).
pub const FILE: &str = "kubernetes";

/// What one rebuild decided.
#[derive(Debug)]
pub struct Rebuilt {
    /// `None` when a problem could not be traced to a resource.
    pub snapshot: Option<Snapshot>,
    /// The versions that went into the snapshot: next round's fallbacks.
    pub accepted: BTreeMap<Key, Stored>,
    /// Resources whose current version was rejected, with why.
    pub rejected: BTreeMap<Key, Vec<Problem>>,
    /// Problems that name no watched resource.
    pub unattributed: Vec<Problem>,
}

/// Builds a snapshot from `objects`, falling back to `accepted` versions
/// for rejected resources.
pub fn rebuild(
    objects: &BTreeMap<Key, Stored>,
    accepted: &BTreeMap<Key, Stored>,
    config: &SourceConfig,
) -> Rebuilt {
    let mut candidate = objects.clone();
    let mut rejected: BTreeMap<Key, Vec<Problem>> = BTreeMap::new();
    let rounds = 2 * objects.len() + 1;
    let mut unattributed = vec![];
    for _ in 0..rounds {
        let docs = documents(&candidate);
        let loaded = load_documents(&docs, vec![], vec![], config);
        if loaded.problems.is_empty() {
            return Rebuilt {
                snapshot: Some(loaded.snapshot),
                accepted: candidate,
                rejected,
                unattributed: vec![],
            };
        }
        let by_resource: BTreeMap<String, Vec<Key>> =
            candidate.keys().fold(BTreeMap::new(), |mut map, key| {
                map.entry(key.resource()).or_default().push(key.clone());
                map
            });
        let mut handled = BTreeSet::new();
        unattributed.clear();
        for problem in loaded.problems {
            let Some(keys) = by_resource.get(&problem.resource) else {
                unattributed.push(problem);
                continue;
            };
            for key in keys {
                let current = objects.get(key) == candidate.get(key);
                if current {
                    let list = rejected.entry(key.clone()).or_default();
                    if !list.contains(&problem) {
                        list.push(problem.clone());
                    }
                }
                if !handled.insert(key.clone()) {
                    continue;
                }
                match accepted.get(key) {
                    Some(previous) if current && Some(previous) != objects.get(key) => {
                        candidate.insert(key.clone(), previous.clone());
                    }
                    _ => {
                        candidate.remove(key);
                    }
                }
            }
        }
        if handled.is_empty() {
            break;
        }
    }
    Rebuilt {
        snapshot: None,
        accepted: accepted.clone(),
        rejected,
        unattributed,
    }
}

/// The document of each object, in key order.
fn documents(objects: &BTreeMap<Key, Stored>) -> Vec<Document> {
    objects
        .iter()
        .enumerate()
        .filter_map(|(i, (key, stored))| {
            let value = serde_yaml::to_value(strip(key, &stored.value)).ok()?;
            Some(Document {
                file: FILE.to_string(),
                index: i + 1,
                item: None,
                value,
            })
        })
        .collect()
}

/// The object as a user would have written it: without `managedFields`
/// and, except for a Pod (its IPs) and a Node (its addresses), without
/// status (for Istio kinds that is where our own conditions go).
pub fn strip(key: &Key, value: &serde_json::Value) -> serde_json::Value {
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        if !(key.group.is_empty() && matches!(key.kind.as_str(), "Pod" | "Node")) {
            map.remove("status");
        }
        if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
        }
    }
    value
}

/// What identifies a version's content for reporting: the stripped object
/// without its resourceVersion, so our own status patches (which bump the
/// resourceVersion) do not count as a new version to report.
pub fn content(key: &Key, stored: &Stored) -> String {
    let mut value = strip(key, &stored.value);
    if let Some(meta) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        meta.remove("resourceVersion");
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(value: serde_json::Value) -> (Key, Stored) {
        let meta = &value["metadata"];
        let api_version = value["apiVersion"].as_str().unwrap().to_string();
        let key = Key {
            group: api_version
                .rsplit_once('/')
                .map(|(g, _)| g.to_string())
                .unwrap_or_default(),
            kind: value["kind"].as_str().unwrap().into(),
            namespace: meta["namespace"].as_str().unwrap_or_default().into(),
            name: meta["name"].as_str().unwrap().into(),
        };
        let stored = Stored {
            resource_version: meta["resourceVersion"].as_str().unwrap().into(),
            generation: None,
            api_version,
            value,
        };
        (key, stored)
    }

    fn pa(name: &str, rv: &str, mode: &str) -> (Key, Stored) {
        stored(json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv,
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"mtls": {"mode": mode}},
            "status": {"conditions": []},
        }))
    }

    fn modes(snapshot: &Snapshot) -> Vec<String> {
        snapshot
            .state
            .peer_authentications
            .iter()
            .map(|p| format!("{}={:?}", p.name, p.mode))
            .collect()
    }

    #[test]
    fn a_bad_resource_is_rejected_alone_and_its_last_good_version_serves() {
        let config = SourceConfig::default();
        let objects: BTreeMap<_, _> = [pa("a", "1", "STRICT"), pa("b", "2", "PERMISSIVE")].into();
        let first = rebuild(&objects, &BTreeMap::new(), &config);
        assert!(first.rejected.is_empty(), "{:?}", first.rejected);
        let snapshot = first.snapshot.unwrap();
        assert_eq!(modes(&snapshot).len(), 2);

        // `a` turns invalid: its STRICT version keeps serving, `b`'s
        // change is published.
        let objects: BTreeMap<_, _> = [pa("a", "3", "SIDEWAYS"), pa("b", "4", "STRICT")].into();
        let second = rebuild(&objects, &first.accepted, &config);
        let snapshot = second.snapshot.unwrap();
        let rejected: Vec<_> = second.rejected.keys().map(Key::resource).collect();
        assert_eq!(rejected, ["PeerAuthentication default/a"]);
        let problem = &second.rejected.values().next().unwrap()[0];
        assert_eq!(problem.file, FILE);
        assert!(problem.field.contains("mtls"), "{problem}");
        let all = modes(&snapshot).join(" ");
        assert!(all.contains("a=Strict"), "{all}");
        assert!(all.contains("b=Strict"), "{all}");
        assert_eq!(
            second.accepted.values().next().unwrap().resource_version,
            "1"
        );

        // Never accepted: left out.
        let objects: BTreeMap<_, _> = [pa("c", "5", "SIDEWAYS")].into();
        let third = rebuild(&objects, &BTreeMap::new(), &config);
        assert!(third
            .snapshot
            .unwrap()
            .state
            .peer_authentications
            .is_empty());
        assert_eq!(third.rejected.len(), 1);
        assert!(third.accepted.is_empty());
    }

    #[test]
    fn strip_keeps_pod_and_node_status_only() {
        let (key, s) = pa("a", "1", "STRICT");
        let v = strip(&key, &s.value);
        assert!(v.get("status").is_none());
        assert!(v["metadata"].get("managedFields").is_none());
        let (key, s) = stored(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "resourceVersion": "1"},
            "status": {"podIP": "10.0.0.1"},
        }));
        assert_eq!(strip(&key, &s.value)["status"]["podIP"], "10.0.0.1");
        let (node, n) = stored(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n", "resourceVersion": "1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]},
        }));
        assert!(strip(&node, &n.value)["status"]["addresses"].is_array());
        let mut bumped = s.clone();
        bumped.value["metadata"]["resourceVersion"] = json!("2");
        assert_eq!(content(&key, &s), content(&key, &bumped));
    }
}
