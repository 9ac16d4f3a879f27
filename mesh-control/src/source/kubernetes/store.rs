//! The objects the watchers have seen, by (group, kind, namespace, name),
//! with their resourceVersion. A (re)list is buffered per kind and swapped
//! in whole when it completes, so objects deleted while the watch was down
//! disappear and a half-finished relist never shows.
use std::collections::{BTreeMap, BTreeSet};

use kube::api::DynamicObject;
use kube::runtime::watcher::Event;

/// Identity of an object across versions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Empty for the core group.
    pub group: String,
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

impl Key {
    /// How load problems name a resource (`Pod default/a`, `Namespace x`):
    /// the same text, so a problem can be traced back to its object.
    pub fn resource(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource())
        } else {
            write!(f, "{}.{}", self.group, self.resource())
        }
    }
}

/// One version of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub resource_version: String,
    pub generation: Option<i64>,
    pub api_version: String,
    /// The whole object as the API server sent it.
    pub value: serde_json::Value,
}

/// All objects, plus the relists in progress.
#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<Key, Stored>,
    /// Per kind index: objects of a relist in progress.
    relisting: BTreeMap<usize, BTreeMap<Key, Stored>>,
    /// Kinds whose first list completed.
    listed: BTreeSet<usize>,
}

impl Store {
    /// Applies one watcher event of kind number `kind` (its group and
    /// kind name given, since a DynamicObject may lack `types`). Returns
    /// whether the visible objects may have changed.
    pub fn apply(
        &mut self,
        kind: usize,
        group: &str,
        kind_name: &str,
        event: Event<DynamicObject>,
    ) -> bool {
        match event {
            Event::Init => {
                self.relisting.insert(kind, BTreeMap::new());
                false
            }
            Event::InitApply(obj) => {
                let (key, stored) = entry(group, kind_name, obj);
                self.relisting.entry(kind).or_default().insert(key, stored);
                false
            }
            Event::InitDone => {
                let fresh = self.relisting.remove(&kind).unwrap_or_default();
                self.objects
                    .retain(|key, _| !(key.group == group && key.kind == kind_name));
                self.objects.extend(fresh);
                self.listed.insert(kind);
                true
            }
            Event::Apply(obj) => {
                let (key, stored) = entry(group, kind_name, obj);
                self.objects.insert(key, stored);
                true
            }
            Event::Delete(obj) => {
                let (key, _) = entry(group, kind_name, obj);
                self.objects.remove(&key).is_some()
            }
        }
    }

    /// Whether kind number `kind` finished its first list.
    pub fn listed(&self, kind: usize) -> bool {
        self.listed.contains(&kind)
    }

    pub fn objects(&self) -> &BTreeMap<Key, Stored> {
        &self.objects
    }
}

fn entry(group: &str, kind: &str, obj: DynamicObject) -> (Key, Stored) {
    let key = Key {
        group: group.to_string(),
        kind: kind.to_string(),
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
    };
    let resource_version = obj.metadata.resource_version.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    let api_version = obj
        .types
        .as_ref()
        .map(|t| t.api_version.clone())
        .unwrap_or_default();
    let value = serde_json::to_value(&obj).unwrap_or(serde_json::Value::Null);
    (
        key,
        Stored {
            resource_version,
            generation,
            api_version,
            value,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, rv: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        }))
        .unwrap()
    }

    #[test]
    fn relist_replaces_only_its_kind_when_done() {
        let mut store = Store::default();
        store.apply(0, "", "Pod", Event::Init);
        store.apply(0, "", "Pod", Event::InitApply(pod("a", "1")));
        assert!(store.objects().is_empty(), "a list shows only when done");
        assert!(!store.listed(0));
        assert!(store.apply(0, "", "Pod", Event::InitDone));
        assert!(store.listed(0));
        store.apply(0, "", "Pod", Event::Apply(pod("b", "2")));
        let ns: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "resourceVersion": "3"},
        }))
        .unwrap();
        store.apply(1, "", "Namespace", Event::Apply(ns));
        assert_eq!(store.objects().len(), 3);

        // A relist after 410 that no longer has `a` and `b` drops them.
        store.apply(0, "", "Pod", Event::Init);
        store.apply(0, "", "Pod", Event::InitApply(pod("c", "9")));
        store.apply(0, "", "Pod", Event::InitDone);
        let names: Vec<_> = store.objects().keys().map(Key::resource).collect();
        assert_eq!(names, ["Namespace x", "Pod default/c"]);
        assert_eq!(
            store.objects().values().last().unwrap().resource_version,
            "9"
        );

        assert!(store.apply(0, "", "Pod", Event::Delete(pod("c", "10"))));
        assert!(!store.apply(0, "", "Pod", Event::Delete(pod("c", "10"))));
    }
}
