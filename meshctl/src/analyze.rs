//! `meshctl analyze`: renders the control plane's analyzer report
//! (`mesh_control::analyze`) like `istioctl analyze`: one finding a block,
//! severity and code first, then the resource, file and field, what is
//! wrong and what to do.
use mesh_control::analyze::{Report, Severity};

use crate::render::{self, Output};

/// The report had at least one Error: print `0`, exit 1 (as istioctl).
#[derive(Debug, thiserror::Error)]
#[error("analysis found errors")]
pub struct FoundErrors(pub String);

fn severity(s: &Severity) -> &'static str {
    match s {
        Severity::Error => "Error",
        Severity::Warning => "Warning",
        Severity::Info => "Info",
    }
}

/// The text to print; `Err(FoundErrors(text))` when the report has errors.
pub fn finish(report: &Report, output: Output) -> anyhow::Result<String> {
    let text = render(report, output)?;
    if report.has_errors() {
        return Err(FoundErrors(text).into());
    }
    Ok(text)
}

pub fn render(report: &Report, output: Output) -> anyhow::Result<String> {
    let value = serde_json::to_value(report)?;
    if let Some(text) = render::data(&value, output) {
        return Ok(text);
    }
    if report.findings.is_empty() {
        return Ok("✔ No validation issues found.\n".into());
    }
    let mut out = String::new();
    for f in &report.findings {
        out += &format!("{} [{}] ({})", severity(&f.severity), f.code, f.resource);
        if let Some(file) = &f.file {
            out += &format!(" {file}");
        }
        if let Some(field) = &f.field {
            out += &format!(" {field}");
        }
        out += "\n";
        out += &render::wrap(&f.message, 96, "    ", "    ");
        if !f.suggestion.is_empty() {
            out += &render::wrap(&f.suggestion, 96, "    fix: ", "         ");
        }
    }
    let count = |s: Severity| {
        report
            .findings
            .iter()
            .filter(|f| std::mem::discriminant(&f.severity) == std::mem::discriminant(&s))
            .count()
    };
    out += &format!(
        "{} error(s), {} warning(s), {} info\n",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    );
    Ok(out)
}
