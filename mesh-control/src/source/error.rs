//! What can go wrong loading a configuration directory, said so that the
//! operator can find it: every [`Problem`] names the file, the resource
//! (`Kind namespace/name`, or the document's position when it has no name)
//! and the field.
use std::{fmt, path::PathBuf};

/// One thing wrong with one resource (or one file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File name inside the directory, e.g. `pods.yaml`.
    pub file: String,
    /// `Pod default/productpage-v1`, `Namespace bookinfo`, or `document 3`
    /// when the document has no usable kind/name; empty for file-level problems.
    pub resource: String,
    /// Dotted path of the offending field (`spec.ports[0].targetPort`);
    /// empty when the problem is the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        for part in [&self.resource, &self.field] {
            if !part.is_empty() {
                write!(f, ": {part}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A directory load that did not produce a state.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory itself cannot be listed (missing, not a directory,
    /// permissions). At startup this is fatal; during hot reload the
    /// previous state stays.
    #[error("configuration directory {}: {}", path.display(), describe_io(error))]
    Directory {
        path: PathBuf,
        error: std::io::Error,
    },
    /// At least one file or resource is invalid; nothing of the load is used.
    #[error("{}", render(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl LoadError {
    /// Every problem, one per element (a directory error is one problem).
    pub fn problems(&self) -> Vec<String> {
        match self {
            LoadError::Directory { .. } => vec![self.to_string()],
            LoadError::Invalid { problems, .. } => {
                problems.iter().map(ToString::to_string).collect()
            }
        }
    }
}

fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "does not exist".into(),
        std::io::ErrorKind::NotADirectory => "is not a directory".into(),
        _ => error.to_string(),
    }
}

fn render(path: &std::path::Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "configuration in {} rejected ({} problem{}):",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        out.push_str("\n  ");
        out.push_str(&problem.to_string());
    }
    out
}
