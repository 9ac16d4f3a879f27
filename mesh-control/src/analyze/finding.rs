//! What an analysis reports: [`Finding`]s with a stable code, gathered in a
//! [`Report`]. Shared by the analyzer and by the control plane's own
//! translation (whose tolerated problems are logged as findings).
use std::fmt;

use serde::Serialize;

/// How bad a finding is. `Error`: the configuration is rejected (or would
/// be); `Warning`: accepted, but it does not do what it says; `Info`: worth
/// a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
            Severity::Info => "Info",
        })
    }
}

/// One problem with one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable identifier (`MESH0101`); see [`super::codes`].
    pub code: &'static str,
    /// `VirtualService bookinfo/reviews`; empty for a whole file.
    pub resource: String,
    /// File the resource came from, when known.
    pub file: Option<String>,
    /// Dotted path of the field (`spec.http[0].route[0].destination.host`).
    pub field: Option<String>,
    pub message: String,
    /// What to do about it.
    pub suggestion: String,
}

impl fmt::Display for Finding {
    /// `Warning [MESH0204] AuthorizationPolicy ns/p (f.yaml) spec.selector: message`,
    /// the shape of a log line and of `meshctl analyze` text output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] {}", self.severity, self.code, self.resource)?;
        if let Some(file) = &self.file {
            write!(f, " ({file})")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything one analysis found, errors first, then by resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Findings with `code`, for callers and tests.
    pub fn with_code(&self, code: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.code == code).collect()
    }

    /// Sorts by severity, resource, field, then code (stable output).
    pub(crate) fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            (a.severity, &a.resource, &a.field, a.code).cmp(&(
                b.severity,
                &b.resource,
                &b.field,
                b.code,
            ))
        });
        self.findings.dedup();
    }
}
