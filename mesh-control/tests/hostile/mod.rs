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
