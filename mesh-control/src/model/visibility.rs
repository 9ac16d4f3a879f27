//! `exportTo`: which namespaces see a VirtualService, DestinationRule or
//! ServiceEntry, as istiod applies it. An entry is `.` (the resource's own
//! namespace), `*` (every namespace), `~` (no namespace) or a namespace
//! name; an empty list is `*` (Istio's default when the mesh config sets
//! no `defaultVirtualServiceExportTo` / `defaultDestinationRuleExportTo` /
//! `defaultServiceExportTo`).

/// `.`: the resource's own namespace.
pub const PRIVATE: &str = ".";
/// `*`: every namespace.
pub const PUBLIC: &str = "*";
/// `~`: no namespace.
pub const NONE: &str = "~";

/// True when a resource of namespace `own` with `export_to` is visible
/// from namespace `viewer`.
pub fn exported_to(export_to: &[String], own: &str, viewer: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| e == PUBLIC || e == viewer || (e == PRIVATE && own == viewer))
}

/// `export_to` as users read it in messages: `["."]`, `["*"]` when empty.
pub fn describe(export_to: &[String]) -> String {
    if export_to.is_empty() {
        return "[\"*\"] (the default)".into();
    }
    let quoted: Vec<String> = export_to.iter().map(|e| format!("{e:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn entries_name_namespaces_as_istio_reads_them() {
        assert!(exported_to(&[], "a", "b"));
        assert!(exported_to(&list(&["*"]), "a", "b"));
        assert!(exported_to(&list(&["."]), "a", "a"));
        assert!(!exported_to(&list(&["."]), "a", "b"));
        assert!(exported_to(&list(&[".", "b"]), "a", "b"));
        assert!(!exported_to(&list(&["c"]), "a", "a"));
        assert!(!exported_to(&list(&["~"]), "a", "a"));
        assert!(!exported_to(&list(&["~"]), "a", "b"));
    }
}
