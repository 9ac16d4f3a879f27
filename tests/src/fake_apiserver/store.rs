//! The fake's object store: objects per kind under one global, monotonically
//! increasing resourceVersion (as etcd's revision), with what an apiserver
//! adds on write (`uid`, `creationTimestamp`, `generation`, `namespace`
//! defaulting to `default`), an event log for watches and a compaction
//! point below which resourceVersions are expired (410 Gone).
use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{
    kinds::{self, Kind},
    FakeError,
};

/// `ADDED`, `MODIFIED` or `DELETED`, with the object as of that write.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: &'static Kind,
    pub namespace: String,
    pub kind_of_change: &'static str,
    pub object: Value,
}

/// Key of a stored object: kind, namespace (empty when cluster-scoped), name.
type Key = (&'static str, &'static str, String, String);

fn key(kind: &'static Kind, namespace: &str, name: &str) -> Key {
    (
        kind.group,
        kind.kind,
        namespace.to_string(),
        name.to_string(),
    )
}

#[derive(Debug, Default)]
pub struct Store {
    /// The last resourceVersion handed out.
    pub rv: u64,
    /// The oldest resourceVersion still servable: a watch from an older
    /// one gets 410.
    pub compacted: u64,
    /// How many times [`Store::compact`] ran (watches opened before the
    /// last one stop sending bookmarks, so they cannot skip the relist).
    pub compactions: u64,
    objects: BTreeMap<Key, Value>,
    /// Changes after `compacted`, oldest first.
    log: Vec<Change>,
    uids: u64,
}

impl Store {
    /// Creates or replaces `object` (like `kubectl apply` of a whole
    /// object). Returns its new resourceVersion.
    pub fn apply(&mut self, mut object: Value) -> Result<u64, FakeError> {
        let api_version = str_field(&object, "apiVersion")?.to_string();
        let kind_name = str_field(&object, "kind")?.to_string();
        let kind = kinds::by_kind(&api_version, &kind_name).ok_or(FakeError::UnknownKind {
            api_version,
            kind: kind_name,
        })?;
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or(FakeError::MissingField {
                kind: kind.kind,
                field: "metadata.name",
            })?
            .to_string();
        let namespace = if kind.namespaced {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        object["apiVersion"] = json!(kind.api_version());
        let previous = self.objects.get(&key(kind, &namespace, &name)).cloned();
        let (uid, created, generation) = match &previous {
            Some(old) => {
                let spec_changed = strip(old) != strip(&object);
                let generation = old.pointer("/metadata/generation").and_then(Value::as_u64);
                (
                    old["metadata"]["uid"].clone(),
                    old["metadata"]["creationTimestamp"].clone(),
                    generation.unwrap_or(1) + u64::from(spec_changed),
                )
            }
            None => {
                self.uids += 1;
                (
                    json!(format!("00000000-0000-4000-8000-{:012x}", self.uids)),
                    json!("2026-01-01T00:00:00Z"),
                    1,
                )
            }
        };
        let meta = object
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or(FakeError::MissingField {
                kind: kind.kind,
                field: "metadata",
            })?;
        if kind.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        }
        meta.insert("uid".into(), uid);
        meta.insert("creationTimestamp".into(), created);
        meta.insert("generation".into(), json!(generation));
        let change = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        Ok(self.write(kind, &namespace, &name, object, change))
    }

    /// Removes an object; `kind` as in [`kinds::by_name`].
    pub fn delete(&mut self, kind: &str, namespace: &str, name: &str) -> Result<u64, FakeError> {
        let kind = kinds::by_name(kind).ok_or_else(|| FakeError::UnknownKind {
            api_version: String::new(),
            kind: kind.to_string(),
        })?;
        let namespace = if kind.namespaced { namespace } else { "" };
        let object = self
            .objects
            .remove(&key(kind, namespace, name))
            .ok_or_else(|| FakeError::NotFound(format!("{} {namespace}/{name}", kind.kind)))?;
        Ok(self.write(kind, namespace, name, object, "DELETED"))
    }

    /// Merge-patches (RFC 7386) the `status` of an object with `patch`'s
    /// `status`, as the `/status` subresource does. A patch that changes
    /// nothing writes nothing (no new resourceVersion, no event).
    pub fn patch_status(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, FakeError> {
        let mut object = self
            .objects
            .get(&key(kind, namespace, name))
            .cloned()
            .ok_or_else(|| FakeError::NotFound(format!("{} {namespace}/{name}", kind.kind)))?;
        let mut status = object.get("status").cloned().unwrap_or(Value::Null);
        merge_patch(&mut status, patch.get("status").unwrap_or(&Value::Null));
        if object.get("status") == Some(&status) {
            return Ok(object);
        }
        object["status"] = status;
        self.write(kind, namespace, name, object, "MODIFIED");
        Ok(self.get(kind, namespace, name).cloned().unwrap_or_default())
    }

    fn write(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        mut object: Value,
        kind_of_change: &'static str,
    ) -> u64 {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        if kind_of_change != "DELETED" {
            self.objects
                .insert(key(kind, namespace, name), object.clone());
        }
        self.log.push(Change {
            rv: self.rv,
            kind,
            namespace: namespace.to_string(),
            kind_of_change,
            object,
        });
        self.rv
    }

    pub fn get(&self, kind: &'static Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(kind, namespace, name))
    }

    /// Current objects of `kind` (in `namespace` if given), by namespace
    /// and name.
    pub fn list(&self, kind: &'static Kind, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((g, k, ns, _), _)| {
                *g == kind.group && *k == kind.kind && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Changes of `kind` after `rv`, or `None` when `rv` is older than the
    /// compaction point (the caller answers 410).
    pub fn changes_since(
        &self,
        kind: &'static Kind,
        namespace: Option<&str>,
        rv: u64,
    ) -> Option<Vec<Change>> {
        if rv < self.compacted {
            return None;
        }
        Some(
            self.log
                .iter()
                .filter(|c| {
                    c.rv > rv
                        && std::ptr::eq(c.kind, kind)
                        && namespace.is_none_or(|n| n == c.namespace)
                })
                .cloned()
                .collect(),
        )
    }

    /// Expires every resourceVersion handed out so far: the history is
    /// dropped and the revision moves on (as a write would), so a list
    /// after this returns a resourceVersion a watch can start from.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.compacted = self.rv;
        self.compactions += 1;
        self.log.clear();
    }
}

/// The object without what the server maintains and without `status`: a
/// change here is a spec change (bumps `generation`).
fn strip(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        map.remove("apiVersion");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "namespace",
                "managedFields",
            ] {
                meta.remove(field);
            }
        }
    }
    object
}

fn str_field<'a>(object: &'a Value, field: &'static str) -> Result<&'a str, FakeError> {
    object
        .get(field)
        .and_then(Value::as_str)
        .ok_or(FakeError::MissingField {
            kind: "object",
            field,
        })
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().expect("made an object above");
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(ns: Option<&str>, host: &str) -> Value {
        let mut v = json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "r"}, "spec": {"hosts": [host]}});
        if let Some(ns) = ns {
            v["metadata"]["namespace"] = json!(ns);
        }
        v
    }

    #[test]
    fn writes_version_defaults_and_log() {
        let mut s = Store::default();
        let kind = kinds::by_name("VirtualService").unwrap();
        assert_eq!(s.apply(vs(None, "a")).unwrap(), 1);
        let obj = s.get(kind, "default", "r").unwrap().clone();
        assert_eq!(obj["apiVersion"], "networking.istio.io/v1");
        assert_eq!(obj["metadata"]["resourceVersion"], "1");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert_eq!(s.apply(vs(Some("default"), "b")).unwrap(), 2);
        let obj2 = s.get(kind, "default", "r").unwrap();
        assert_eq!(obj2["metadata"]["uid"], obj["metadata"]["uid"]);
        assert_eq!(obj2["metadata"]["generation"], 2);
        // Status-only patch: no generation bump; the same patch again is a no-op.
        let patch = json!({"status": {"conditions": [{"type": "Accepted"}]}});
        s.patch_status(kind, "default", "r", &patch).unwrap();
        s.patch_status(kind, "default", "r", &patch).unwrap();
        assert_eq!(s.rv, 3);
        assert_eq!(
            s.get(kind, "default", "r").unwrap()["metadata"]["generation"],
            2
        );
        s.delete("VirtualService", "default", "r").unwrap();
        let kinds: Vec<_> = s
            .changes_since(kind, None, 1)
            .unwrap()
            .iter()
            .map(|c| c.kind_of_change)
            .collect();
        assert_eq!(kinds, ["MODIFIED", "MODIFIED", "DELETED"]);
        s.compact();
        assert!(s.changes_since(kind, None, 4).is_none(), "expired");
        assert_eq!(s.changes_since(kind, None, 5).unwrap().len(), 0);
        assert!(s
            .apply(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}})
            )
            .is_err());
    }

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut t, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(t, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
