//! `cargo xtask demo --config <dir>`: the user's Istio YAML over the demo's
//! defaults. A user resource replaces the default of the same kind,
//! namespace and name (the course notes call their VirtualService
//! `reviews`, as the demo does), and the demo says which it replaced; the
//! rest of the defaults stay. The user's files go to the control plane
//! unchanged, so anything wrong in them is reported by the control plane
//! with file, resource and field, and the defaults keep serving.
use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use serde::Deserialize as _;

/// Kind, namespace and name: what makes two resources the same one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The demo's namespace, for resources that name none.
const DEFAULT_NAMESPACE: &str = "default";

/// The key of one YAML document, if it is a resource with kind and name.
fn key_of(doc: &serde_yaml::Value) -> Option<ResourceKey> {
    let kind = doc.get("kind")?.as_str()?;
    let meta = doc.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    let namespace = meta
        .get("namespace")
        .and_then(|n| n.as_str())
        .unwrap_or(DEFAULT_NAMESPACE);
    Some(ResourceKey {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// The keys of the resources in a (multi-document) YAML text, up to the
/// first document that does not parse (the control plane reports that
/// one; the parser cannot resynchronise after a syntax error).
fn keys_of(text: &str) -> Vec<ResourceKey> {
    serde_yaml::Deserializer::from_str(text)
        .map_while(|d| serde_yaml::Value::deserialize(d).ok())
        .filter_map(|v| key_of(&v))
        .collect()
}

/// A default file's documents, verbatim (comments kept): split at `---`
/// lines, which is how the demo's own files separate them.
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    docs
}

/// The defaults after a merge: (file name, YAML) in order, and each
/// resource taken out with the default file it came from.
pub struct Merged {
    pub defaults: Vec<(String, String)>,
    pub replaced: Vec<(ResourceKey, String)>,
}

/// The defaults with every resource the user redefines taken out.
pub fn merge(defaults: &[(&str, &str)], user: &BTreeMap<String, String>) -> Merged {
    let overridden: Vec<ResourceKey> = user.values().flat_map(|t| keys_of(t)).collect();
    let mut replaced = vec![];
    let mut files = vec![];
    for (file, text) in defaults {
        let mut kept = vec![];
        for doc in documents(text) {
            let key = keys_of(&doc).into_iter().next();
            match key {
                Some(k) if overridden.contains(&k) => replaced.push((k, file.to_string())),
                _ => kept.push(doc),
            }
        }
        files.push((file.to_string(), kept.join("---\n")));
    }
    Merged {
        defaults: files,
        replaced,
    }
}

/// `*.yaml`/`*.yml` files of a directory, by name.
pub fn read_dir_yaml(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("--config {}", dir.display()))? {
        let path = entry?.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            out.insert(name, text);
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "--config {}: no .yaml files",
        dir.display()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &str = "\
# The canary.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
  namespace: default
spec:
  hosts: [ratings]
";

    #[test]
    fn a_user_resource_replaces_the_default_of_the_same_kind_namespace_and_name() {
        // The course notes' form: no namespace, the natural name.
        let user = BTreeMap::from([(
            "vs.yaml".to_string(),
            "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n---\nkind: DestinationRule\nmetadata: {name: ratings}\n"
                .to_string(),
        )]);
        let Merged {
            defaults: files,
            replaced,
        } = merge(&[("30-vs.yaml", DEFAULTS)], &user);
        assert_eq!(replaced.len(), 1, "{replaced:?}");
        assert_eq!(replaced[0].0.to_string(), "VirtualService default/reviews");
        assert_eq!(replaced[0].1, "30-vs.yaml");
        let (_, text) = &files[0];
        assert_eq!(keys_of(text).len(), 1, "{text}");
        assert_eq!(keys_of(text)[0].name, "ratings");
        assert!(!text.contains("name: reviews"), "{text}");
    }

    #[test]
    fn other_namespaces_and_kinds_replace_nothing() {
        let user = BTreeMap::from([(
            "x.yaml".to_string(),
            "kind: VirtualService\nmetadata: {name: reviews, namespace: other}\n---\nkind: DestinationRule\nmetadata: {name: reviews}\n---\n: not yaml [\n"
                .to_string(),
        )]);
        let Merged {
            defaults: files,
            replaced,
        } = merge(&[("30-vs.yaml", DEFAULTS)], &user);
        assert!(replaced.is_empty(), "{replaced:?}");
        assert_eq!(keys_of(&files[0].1).len(), 2);
        assert!(files[0].1.starts_with("# The canary."), "comments are kept");
    }
}
