//! Files → YAML documents. A file holds any number of `---`-separated
//! documents; empty documents are skipped and a `kind: List` (what
//! `kubectl get -o yaml` prints) is expanded into its items.
use std::{
    io,
    path::{Path, PathBuf},
};

use serde::Deserialize as _;
use serde_yaml::Value;

use super::error::Problem;

/// One Kubernetes object as found in a file.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub file: String,
    /// 1-based position of the document in its file.
    pub index: usize,
    /// 1-based position inside a `kind: List`.
    pub item: Option<usize>,
    pub value: Value,
}

impl Document {
    /// `document 3` or `document 3, item 2`: how to name a resource that
    /// has no usable kind or name.
    pub fn position(&self) -> String {
        match self.item {
            Some(item) => format!("document {}, item {item}", self.index),
            None => format!("document {}", self.index),
        }
    }
}

/// The `*.yaml` / `*.yml` files of `dir` (not recursive), sorted by name.
/// Hidden files (editors' and atomic-write temporaries) are ignored;
/// symlinks are followed, as in a mounted ConfigMap.
pub(crate) fn yaml_files(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut files = vec![];
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        // A dangling symlink or a directory named *.yaml is not a config file.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Splits `text` (the content of `file`) into documents. Syntax errors become
/// problems; `warnings` receives notes about tolerated irregularities.
pub(crate) fn parse(
    file: &str,
    text: &str,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Vec<Document> {
    let values = match split(text) {
        Ok(values) => values,
        Err((index, error)) => match tolerate_tabs(text) {
            // Hand-written YAML (course notes, wikis) sometimes indents
            // with a tab, which YAML forbids. Only when the file does not
            // parse as it is do we read leading tabs as spaces, and say so.
            Some((values, lines)) => {
                warnings.push(format!(
                    "{file}: line{} {}: tab used for indentation (not valid YAML; kubectl would reject this file): read as spaces",
                    if lines.len() == 1 { "" } else { "s" },
                    lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ));
                values
            }
            None => {
                problems.push(Problem {
                    file: file.to_string(),
                    resource: format!("document {index}"),
                    field: String::new(),
                    message: format!("invalid YAML: {error}"),
                });
                return vec![];
            }
        },
    };
    let mut documents = vec![];
    for (i, value) in values.into_iter().enumerate() {
        let index = i + 1;
        if value.is_null() {
            continue;
        }
        let is_list = value.get("kind").and_then(Value::as_str) == Some("List")
            && value.get("apiVersion").and_then(Value::as_str) == Some("v1");
        if is_list {
            match value.get("items") {
                None | Some(Value::Null) => {}
                Some(Value::Sequence(items)) => {
                    for (j, item) in items.iter().enumerate() {
                        documents.push(Document {
                            file: file.to_string(),
                            index,
                            item: Some(j + 1),
                            value: item.clone(),
                        });
                    }
                }
                Some(_) => problems.push(Problem {
                    file: file.to_string(),
                    resource: format!("document {index}"),
                    field: "items".into(),
                    message: "expected a list".into(),
                }),
            }
            continue;
        }
        documents.push(Document {
            file: file.to_string(),
            index,
            item: None,
            value,
        });
    }
    documents
}

/// All documents of `text`, or the 1-based index of the first one that
/// fails with its error. (serde_yaml keeps yielding the same error after
/// a syntax error, so iteration stops there.)
fn split(text: &str) -> Result<Vec<Value>, (usize, serde_yaml::Error)> {
    let mut values = vec![];
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(document) {
            Ok(value) => values.push(value),
            Err(error) => return Err((i + 1, error)),
        }
    }
    Ok(values)
}

/// Retries with tabs in leading whitespace expanded (tab stops 8, 4, 2);
/// returns the documents and the 1-based lines that had such tabs.
fn tolerate_tabs(text: &str) -> Option<(Vec<Value>, Vec<usize>)> {
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            line.chars()
                .take_while(|c| *c == ' ' || *c == '\t')
                .any(|c| c == '\t')
        })
        .map(|(i, _)| i + 1)
        .collect();
    if lines.is_empty() {
        return None;
    }
    [8, 4, 2].into_iter().find_map(|stop| {
        let expanded = expand_leading_tabs(text, stop);
        split(&expanded).ok().map(|values| (values, lines.clone()))
    })
}

fn expand_leading_tabs(text: &str, stop: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut column = 0;
        let mut rest = line;
        while let Some(c) = rest.chars().next() {
            match c {
                ' ' => column += 1,
                '\t' => column = (column / stop + 1) * stop,
                _ => break,
            }
            rest = &rest[1..];
        }
        out.extend(std::iter::repeat_n(' ', column));
        out.push_str(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(docs: &[Document]) -> Vec<(usize, Option<usize>, String)> {
        docs.iter()
            .map(|d| {
                (
                    d.index,
                    d.item,
                    d.value
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn splits_skips_empty_and_expands_lists() {
        let text = "---\nkind: A\n---\n---\n# only a comment\n---\n    apiVersion: v1\n    kind: B\n---\napiVersion: v1\nkind: List\nitems:\n- kind: C\n- kind: D\n";
        let (mut problems, mut warnings) = (vec![], vec![]);
        let docs = parse("f.yaml", text, &mut problems, &mut warnings);
        assert!(problems.is_empty() && warnings.is_empty());
        assert_eq!(
            kinds(&docs),
            [
                (1, None, "A".into()),
                (4, None, "B".into()),
                (5, Some(1), "C".into()),
                (5, Some(2), "D".into())
            ]
        );
    }

    #[test]
    fn syntax_error_names_file_and_document() {
        let (mut problems, mut warnings) = (vec![], vec![]);
        let docs = parse(
            "bad.yaml",
            "kind: A\n---\nkind: [\n",
            &mut problems,
            &mut warnings,
        );
        assert!(docs.is_empty());
        assert_eq!(problems.len(), 1);
        let text = problems[0].to_string();
        assert!(
            text.starts_with("bad.yaml: document 2: invalid YAML: "),
            "{text}"
        );
        assert!(text.contains("line 4"), "{text}");
    }

    #[test]
    fn tab_indentation_is_tolerated_with_a_warning() {
        let text = "kind: ServiceEntry\nspec:\n  exportTo: # x\n  \t- \".\" # y\n  ports:\n  - number: 80\n";
        assert!(split(text).is_err());
        let (mut problems, mut warnings) = (vec![], vec![]);
        let docs = parse("se.yaml", text, &mut problems, &mut warnings);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("se.yaml: line 4: tab"),
            "{warnings:?}"
        );
        let spec = docs[0].value.get("spec").unwrap();
        assert_eq!(
            spec.get("exportTo").unwrap().as_sequence().unwrap().len(),
            1
        );
        assert!(spec.get("ports").is_some());
    }
}
