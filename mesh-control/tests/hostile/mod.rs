//! Hostile configuration files, generated (nothing large is stored): YAML
//! bombs, deep nesting, huge files and object counts, wrong types at every
//! field the source reads, duplicates, unknown kinds, bad names, invalid
//! UTF-8 and expensive regexes. Each case says what the directory source
//! must answer: a rejection naming the resource and the field, or (for
//! kinds the mesh does not read) a skip with a warning.
pub mod cases;
pub mod good;

/// One hostile file, loaded next to [`good::GOOD_YAML`].
pub struct Case {
    /// Unique; the file is written as `zz-<name>.yaml`.
    pub name: String,
    pub content: Vec<u8>,
    pub expect: Expect,
    /// Set when the case is known to fail for a reason owned elsewhere
    /// (a budget or a validation mesh-control does not have yet): such cases
    /// run in their own ignored test, listed by this reason.
    pub awaits: Option<&'static str>,
}

/// What the source must do with the hostile file.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The load is rejected and one problem of this file names the
    /// resource (`resource` is a substring of `Problem::resource`; empty
    /// means a file-level problem) and the field (`Problem::field` starts
    /// with `field`; for YAML-level errors, which have no field, the
    /// message contains it).
    Rejected { resource: String, field: String },
    /// Accepted; the document is skipped with a warning containing this.
    Skipped { warning: String },
}

impl Case {
    pub fn file_name(&self) -> String {
        format!("zz-{}.yaml", self.name)
    }
}

/// Reason for cases that wait for a nesting budget checked before the
/// YAML parser runs: libyaml's scanner (under serde_yaml) is quadratic in
/// the depth of flow collections, and serde_yaml's recursion limit applies
/// only after the whole document is scanned.
/// Reason for regexes mesh-control's regex size budget lets through today
/// although RE2 (Envoy) refuses them or they are huge: `a{1001}` (RE2's
/// repetition limit is 1000) and `\w{5000}`.
pub const REGEX_BUDGET: &str = "regex size budget in mesh-control";
/// Reason for cases mesh-control accepts today although they are wrong
/// (reported as bugs; see [`cases::VALIDATION_GAPS`]).
pub const VALIDATION_GAP: &str = "a validation mesh-control does not do yet";
pub const NESTING_BUDGET: &str = "flow-nesting budget before YAML parsing in mesh-control";
