//! The objects the watchers have seen, by (group, kind, namespace, name),
//! with their resourceVersion. A (re)list is buffered per kind and swapped
//! in whole when it completes, so objects deleted while the watch was down
//! disappear and a half-finished relist never shows.
use std::collections::{BTreeMap, BTreeSet};

use kube::api::DynamicObject;
use kube::discovery::ApiResource;
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
    /// Applies one watcher event of kind number `kind`, described by
    /// `resource` (list items carry no apiVersion and kind; they are set
    /// from it). Returns whether the visible objects may have changed.
    pub fn apply(
        &mut self,
        kind: usize,
        resource: &ApiResource,
        event: Event<DynamicObject>,
    ) -> bool {
        let (group, kind_name) = (resource.group.as_str(), resource.kind.as_str());
        match event {
            Event::Init => {
                self.relisting.insert(kind, BTreeMap::new());
                false
            }
            Event::InitApply(obj) => {
                let (key, stored) = entry(resource, obj);
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
                let (key, stored) = entry(resource, obj);
                self.objects.insert(key, stored);
                true
            }
            Event::Delete(obj) => {
                let (key, _) = entry(resource, obj);
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

fn entry(resource: &ApiResource, obj: DynamicObject) -> (Key, Stored) {
    let key = Key {
        group: resource.group.clone(),
        kind: resource.kind.clone(),
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        name: obj.metadata.name.clone().unwrap_or_default(),
    };
    let resource_version = obj.metadata.resource_version.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    let api_version = resource.api_version.clone();
    let mut value = serde_json::to_value(&obj).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), api_version.clone().into());
        map.insert("kind".into(), resource.kind.clone().into());
    }
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

    /// As in a list: no apiVersion, no kind.
    fn pod(name: &str, rv: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        }))
        .unwrap()
    }

    fn kinds() -> (ApiResource, ApiResource) {
        let all = super::super::resources::watched_kinds();
        (all[1].resource.clone(), all[0].resource.clone())
    }

    #[test]
    fn relist_replaces_only_its_kind_when_done() {
        let (pods, namespaces) = kinds();
        let mut store = Store::default();
        store.apply(0, &pods, Event::Init);
        store.apply(0, &pods, Event::InitApply(pod("a", "1")));
        assert!(store.objects().is_empty(), "a list shows only when done");
        assert!(!store.listed(0));
        assert!(store.apply(0, &pods, Event::InitDone));
        assert!(store.listed(0));
        store.apply(0, &pods, Event::Apply(pod("b", "2")));
        let ns: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "resourceVersion": "3"},
        }))
        .unwrap();
        store.apply(1, &namespaces, Event::Apply(ns));
        assert_eq!(store.objects().len(), 3);

        // A relist after 410 that no longer has `a` and `b` drops them.
        store.apply(0, &pods, Event::Init);
        store.apply(0, &pods, Event::InitApply(pod("c", "9")));
        store.apply(0, &pods, Event::InitDone);
        let names: Vec<_> = store.objects().keys().map(Key::resource).collect();
        assert_eq!(names, ["Namespace x", "Pod default/c"]);
        assert_eq!(
            store.objects().values().last().unwrap().resource_version,
            "9"
        );

        assert!(store.apply(0, &pods, Event::Delete(pod("c", "10"))));
        assert!(!store.apply(0, &pods, Event::Delete(pod("c", "10"))));
    }
}
