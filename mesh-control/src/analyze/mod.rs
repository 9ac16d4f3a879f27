//! `meshctl analyze`'s library: checks a configuration (a directory, parsed
//! documents, or raw resources as JSON from `/config_dump`) and reports
//! [`Finding`]s with stable codes ([`codes`]) — what the control plane
//! would reject, what it accepts but cannot do as written, and references
//! that lead nowhere.
//!
//! It reads through the same source layer the control plane does, so an
//! `Error` finding is exactly a problem that would make the control plane
//! reject the change; unlike the control plane it keeps going after one and
//! checks everything that did parse.
//!
//! - [`routing`]: VirtualService hosts and subsets, DestinationRule subsets.
//! - [`security`]: AuthorizationPolicy and PeerAuthentication.
//! - [`waypoint`]: L7 configuration with no proxy to run on (no waypoint,
//!   VirtualServices bound to no existing gateway, Istio Gateways no pod
//!   serves or with servers not served yet).
//! - [`gateway_api`]: Gateway API status conditions that are `False`
//!   (routes not accepted, references not resolved, listeners not served).
//! - [`visibility`]: VirtualServices and DestinationRules a waypoint's
//!   namespace cannot see (`exportTo`) or that another rule overrides.
//! - [`service_entry`]: ServiceEntry hosts another Service or entry
//!   defines, wildcards with DNS, parts the mesh does not carry (computed
//!   by the source, so the control plane logs them too).
pub mod codes;
mod finding;
mod gateway_api;
mod routing;
mod security;
pub(crate) mod service_entry;
mod visibility;
mod waypoint;

use std::path::{Path, PathBuf};

pub use finding::{Finding, Report, Severity};

use crate::source::{
    self,
    documents::{self, Document},
    Problem, SourceConfig,
};

/// One resource to analyze: where it came from and its content.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// File name, or `None` for resources that come from no file (e.g.
    /// the control plane's `/config_dump`).
    pub file: Option<String>,
    pub value: serde_yaml::Value,
}

/// The analysis could not start.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// `path` cannot be listed (missing, not a directory, permissions).
    #[error("cannot read configuration directory {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Analyzes every `*.yaml` / `*.yml` file of `path`, as the control plane
/// would load it, with the default [`SourceConfig`]. Unreadable files are
/// `Error` findings; only an unreadable directory is an error.
pub fn analyze_dir(path: &Path) -> Result<Report, AnalyzeError> {
    analyze_dir_with(path, &SourceConfig::default())
}

/// [`analyze_dir`] with explicit trust domain, root namespace and cluster
/// domain.
pub fn analyze_dir_with(path: &Path, config: &SourceConfig) -> Result<Report, AnalyzeError> {
    let directory_error = |source| AnalyzeError::Directory {
        path: path.to_path_buf(),
        source,
    };
    let mut files = vec![];
    let mut unreadable = vec![];
    for (name, file) in documents::yaml_files(path).map_err(directory_error)? {
        match std::fs::read(&file).map(String::from_utf8) {
            Ok(Ok(text)) => files.push((name, text)),
            Ok(Err(_)) => unreadable.push(file_finding(&name, "not UTF-8 text")),
            Err(e) => unreadable.push(file_finding(&name, &format!("cannot be read: {e}"))),
        }
    }
    let mut report = analyze_files(&files, config);
    report.findings.extend(unreadable);
    report.sort();
    Ok(report)
}

/// Analyzes in-memory files (`(file name, YAML text)`); YAML syntax errors
/// are `Error` findings.
pub fn analyze_files(files: &[(String, String)], config: &SourceConfig) -> Report {
    let (mut problems, mut warnings, mut docs) = (vec![], vec![], vec![]);
    for (name, text) in files {
        docs.extend(documents::parse(name, text, &mut problems, &mut warnings));
    }
    analyze(&docs, problems, warnings, config)
}

/// Analyzes resources already parsed (one Kubernetes object each), with
/// the default [`SourceConfig`].
pub fn analyze_documents(docs: Vec<Input>) -> Report {
    analyze_documents_with(docs, &SourceConfig::default())
}

/// [`analyze_documents`] with an explicit configuration.
pub fn analyze_documents_with(docs: Vec<Input>, config: &SourceConfig) -> Report {
    // Positions count per file, as in a file of several documents.
    let mut counts = std::collections::HashMap::<String, usize>::new();
    let docs: Vec<Document> = docs
        .into_iter()
        .map(|input| {
            let file = input.file.unwrap_or_default();
            let index = counts.entry(file.clone()).or_default();
            *index += 1;
            Document {
                file,
                index: *index,
                item: None,
                value: input.value,
            }
        })
        .collect();
    analyze(&docs, vec![], vec![], config)
}

/// Analyzes raw resources given as JSON (e.g. the raw Istio resources of
/// the control plane's `/config_dump`); they come from no file.
pub fn analyze_values(values: Vec<serde_json::Value>) -> Report {
    let docs = values
        .into_iter()
        .map(|value| Input {
            file: None,
            // JSON is a subset of YAML's data model: this cannot fail.
            value: serde_yaml::to_value(value).unwrap_or(serde_yaml::Value::Null),
        })
        .collect();
    analyze_documents(docs)
}

fn analyze(
    docs: &[Document],
    problems: Vec<Problem>,
    warnings: Vec<String>,
    config: &SourceConfig,
) -> Report {
    let loaded = source::load_documents(docs, problems, warnings, config);
    let mut report = Report::default();
    report
        .findings
        .extend(loaded.problems.iter().map(problem_finding));
    let snapshot = &loaded.snapshot;
    // Translation findings are structured already; the other load warnings
    // (skipped kinds, tab indentation, …) are only text.
    let structured: Vec<String> = snapshot.findings.iter().map(|f| f.to_string()).collect();
    for warning in &snapshot.warnings {
        if !structured.contains(warning) {
            report.findings.push(Finding {
                severity: Severity::Info,
                code: codes::LOAD_NOTE,
                resource: String::new(),
                file: None,
                field: None,
                message: warning.clone(),
                suggestion: "nothing is rejected; see the message".into(),
            });
        }
    }
    report.findings.extend(snapshot.findings.iter().cloned());
    routing::check(snapshot, config, &mut report.findings);
    security::check(snapshot, docs, config, &mut report.findings);
    waypoint::check(snapshot, &mut report.findings);
    visibility::check(snapshot, config, &mut report.findings);
    gateway_api::check(snapshot, &mut report.findings);
    report.sort();
    report
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn problem_finding(problem: &Problem) -> Finding {
    Finding {
        severity: Severity::Error,
        code: codes::INVALID,
        resource: problem.resource.clone(),
        file: non_empty(&problem.file),
        field: non_empty(&problem.field),
        message: problem.message.clone(),
        suggestion: "fix this field; while it is wrong the control plane rejects the whole change and keeps serving the previous configuration".into(),
    }
}

fn file_finding(file: &str, message: &str) -> Finding {
    Finding {
        severity: Severity::Error,
        code: codes::INVALID,
        resource: String::new(),
        file: Some(file.to_string()),
        field: None,
        message: message.to_string(),
        suggestion: "make the file readable UTF-8 YAML".into(),
    }
}

#[cfg(test)]
mod tests;
