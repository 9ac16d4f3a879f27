//! `ReferenceGrant` (`gateway.networking.k8s.io/v1beta1`, `v1alpha2`,
//! `v1`): which kinds of which namespaces may refer to objects of the
//! grant's namespace. A cross-namespace `backendRef` (or a Gateway's
//! `certificateRef`) needs one; without it the reference is not resolved
//! (`ResolvedRefs=False`, reason `RefNotPermitted`).
use serde_yaml::Value;

use super::super::routing::{self, Cx};

const VERSIONS: &[&str] = &["v1beta1", "v1alpha2", "v1"];

/// One `from[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct From {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

/// One `to[]` entry; `name` absent: every object of the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct To {
    pub group: String,
    pub kind: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReferenceGrantObj {
    pub namespace: String,
    pub from: Vec<From>,
    pub to: Vec<To>,
}

/// A reference from an object of `from_group`/`from_kind` in
/// `from_namespace` to `to_group`/`to_kind` `to_name` in `to_namespace`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reference<'a> {
    pub from_group: &'a str,
    pub from_kind: &'a str,
    pub from_namespace: &'a str,
    pub to_group: &'a str,
    pub to_kind: &'a str,
    pub to_namespace: &'a str,
    pub to_name: &'a str,
}

/// True when `r` stays in its namespace or a grant of the target's
/// namespace permits it.
pub(crate) fn permitted(grants: &[ReferenceGrantObj], r: Reference<'_>) -> bool {
    r.from_namespace == r.to_namespace
        || grants.iter().any(|g| {
            g.namespace == r.to_namespace
                && g.from.iter().any(|f| {
                    f.group == r.from_group
                        && f.kind == r.from_kind
                        && f.namespace == r.from_namespace
                })
                && g.to.iter().any(|t| {
                    t.group == r.to_group
                        && t.kind == r.to_kind
                        && t.name.as_deref().is_none_or(|n| n == r.to_name)
                })
        })
}

/// Reads the ReferenceGrant in `value`; `None` when it has a problem.
pub(crate) fn read(
    cx: &mut Cx<'_, '_>,
    value: &Value,
    version: &str,
    namespace: &str,
) -> Option<ReferenceGrantObj> {
    let before = cx.count();
    if !VERSIONS.contains(&version) {
        cx.error(
            "apiVersion",
            format!("gateway.networking.k8s.io/{version} is not a ReferenceGrant version the mesh reads (use v1beta1)"),
        );
        return None;
    }
    let spec = value.get("spec").unwrap_or(&Value::Null);
    let mut from = vec![];
    for (item, at) in routing::list(cx, spec.get("from").unwrap_or(&Value::Null), "spec.from") {
        let group = field(cx, item, &at, "group", true);
        let kind = field(cx, item, &at, "kind", false);
        let ns = field(cx, item, &at, "namespace", false);
        if let (Some(group), Some(kind), Some(namespace)) = (group, kind, ns) {
            from.push(From {
                group,
                kind,
                namespace,
            });
        }
    }
    let mut to = vec![];
    for (item, at) in routing::list(cx, spec.get("to").unwrap_or(&Value::Null), "spec.to") {
        let group = field(cx, item, &at, "group", true);
        let kind = field(cx, item, &at, "kind", false);
        let name = item
            .get("name")
            .filter(|v| !v.is_null())
            .and_then(|v| routing::req_text(cx, v, &format!("{at}.name")));
        if let (Some(group), Some(kind)) = (group, kind) {
            to.push(To { group, kind, name });
        }
    }
    if from.is_empty() && cx.count() == before {
        cx.error("spec.from", "required: at least one entry");
    }
    if to.is_empty() && cx.count() == before {
        cx.error("spec.to", "required: at least one entry");
    }
    (cx.count() == before).then(|| ReferenceGrantObj {
        namespace: namespace.to_string(),
        from,
        to,
    })
}

/// A required string field of `item` (`group` may be empty: the core API).
fn field(cx: &mut Cx<'_, '_>, item: &Value, at: &str, key: &str, empty_ok: bool) -> Option<String> {
    let path = format!("{at}.{key}");
    match item.get(key).filter(|v| !v.is_null()) {
        None => {
            cx.error(path, "required field is missing");
            None
        }
        Some(v) if empty_ok => routing::text(cx, v, &path),
        Some(v) => routing::req_text(cx, v, &path),
    }
}
