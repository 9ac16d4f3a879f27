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
    if let Some((index, line)) = too_deep(text) {
        // Refused before the parser sees it: deep flow nesting costs the
        // YAML scanner quadratic time long before its recursion limit.
        problems.push(Problem {
            file: file.to_string(),
            resource: format!("document {index}"),
            field: String::new(),
            message: format!(
                "invalid YAML: line {line}: flow collections ([ ] {{ }}) nested deeper than {MAX_FLOW_DEPTH}"
            ),
        });
        return vec![];
    }
    if let Some((index, line, tag)) = first_tag(text) {
        // serde_yaml reads core-schema tags (`!!binary`, `!!python/…`) as if
        // untagged, so they are looked for in the text.
        problems.push(Problem {
            file: file.to_string(),
            resource: format!("document {index}"),
            field: String::new(),
            message: format!(
                "line {line}: YAML tag {tag} is not accepted: Kubernetes objects are plain YAML"
            ),
        });
        return vec![];
    }
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

/// The 1-based (document, line, tag) of the first YAML tag (`!x`, `!!x`,
/// `!<x>`) in `text`: a `!` where a node starts (line start, after `: `,
/// `- `, `[`, `{` or `,`), outside quotes, comments and block scalars.
fn first_tag(text: &str) -> Option<(usize, usize, String)> {
    let mut document = 1;
    // Indentation of the line that opened a block scalar (`|`, `>`).
    let mut block: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        if let Some(parent) = block {
            if raw.trim().is_empty() || indent > parent {
                continue;
            }
            block = None;
        }
        let mut line = raw;
        if let Some(rest) = raw.strip_prefix("---") {
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                document += 1;
                line = rest;
            }
        }
        let (mut quote, mut node_start, mut anchor, mut prev) = (None::<char>, true, false, ' ');
        let mut content_end = line.len();
        for (i, c) in line.char_indices() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                }
                prev = c;
                continue;
            }
            if anchor {
                // `&name` stands before the node it names.
                anchor = !c.is_whitespace();
                node_start = !anchor;
                prev = c;
                continue;
            }
            match c {
                '#' if prev.is_whitespace() => {
                    content_end = i;
                    break;
                }
                '!' if node_start => {
                    let tag: String = line[i..]
                        .chars()
                        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}'))
                        .collect();
                    return Some((document, n + 1, tag));
                }
                '&' if node_start => anchor = true,
                '"' | '\'' if node_start => {
                    quote = Some(c);
                    node_start = false;
                }
                '[' | '{' | ',' => node_start = true,
                c if c.is_whitespace() => node_start |= matches!(prev, ':' | '-'),
                _ => node_start = false,
            }
            prev = c;
        }
        let last = line[..content_end].split_whitespace().last().unwrap_or("");
        if quote.is_none()
            && (last.starts_with('|') || last.starts_with('>'))
            && last[1..]
                .chars()
                .all(|c| matches!(c, '-' | '+' | '0'..='9'))
        {
            block = Some(indent);
        }
    }
    None
}

/// Deepest flow nesting accepted; serde_yaml's own recursion limit is 128.
const MAX_FLOW_DEPTH: usize = 128;

/// The 1-based (document, line) where flow collections first nest deeper
/// than [`MAX_FLOW_DEPTH`], found by a linear scan that skips quoted
/// scalars and comments.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut document, mut line) = (0usize, 1usize, 1usize);
    let mut chars = text.chars().peekable();
    let (mut at_line_start, mut after_space) = (true, true);
    while let Some(c) = chars.next() {
        if at_line_start && c == '-' && text_starts_doc(&mut chars) {
            document += 1;
        }
        at_line_start = false;
        match c {
            '\n' => {
                line += 1;
                at_line_start = true;
            }
            '#' if after_space => {
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            '"' => {
                while let Some(n) = chars.next() {
                    match n {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        '\n' => line += 1,
                        _ => {}
                    }
                }
            }
            '\'' if after_space || depth > 0 => {
                while let Some(n) = chars.next() {
                    match n {
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                        }
                        '\'' => break,
                        '\n' => line += 1,
                        _ => {}
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some((document, line));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        after_space = c.is_whitespace() || matches!(c, '[' | '{' | ',' | ':');
    }
    None
}

/// After a `-` at the start of a line: whether it is the `---` document
/// marker (consumes the other two dashes).
fn text_starts_doc(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    let mut probe = chars.clone();
    if probe.next() == Some('-')
        && probe.next() == Some('-')
        && probe.peek().is_none_or(|c| c.is_whitespace())
    {
        chars.next();
        chars.next();
        return true;
    }
    false
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
    fn tags_are_refused_with_document_and_line() {
        let text = "a: 1\n---\napiVersion: v1\nkind: Service\nmetadata: !!python/object:os.system {name: x}\n";
        let (mut problems, mut warnings) = (vec![], vec![]);
        assert!(parse("t.yaml", text, &mut problems, &mut warnings).is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].resource, "document 2");
        assert!(
            problems[0]
                .message
                .starts_with("line 5: YAML tag !!python/object:os.system"),
            "{}",
            problems[0].message
        );
        for (text, tag) in [
            ("kind: !!binary aGVsbG8=\n", "!!binary"),
            ("items: [1, !x 2]\n", "!x"),
            ("- &a !t v\n", "!t"),
        ] {
            assert_eq!(
                first_tag(text).map(|t| t.2),
                Some(tag.to_string()),
                "{text}"
            );
        }
        // `!` inside scalars, quotes, comments and block scalars is text.
        for text in [
            "msg: hello !world\n",
            "msg: \"!x\"\nother: '!y'\n",
            "a: 1 # !note\n",
            "script: |\n  !not a tag\n  - !neither\nb: 2\n",
            "folded: >-\n    !text\n",
            "url: http://x/!y\n",
        ] {
            assert_eq!(first_tag(text), None, "{text}");
        }
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let deep = format!(
            "a: 1\n---\nb: {}1{}\n",
            "{a: ".repeat(100_000),
            "}".repeat(100_000)
        );
        let (mut problems, mut warnings) = (vec![], vec![]);
        assert!(parse("deep.yaml", &deep, &mut problems, &mut warnings).is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].resource, "document 2");
        assert!(
            problems[0].message.contains("line 3"),
            "{}",
            problems[0].message
        );
        // Brackets in quotes and comments do not count; real nesting below
        // the limit parses.
        let fine = format!(
            "a: \"{}\"\nb: '{}' # {}\nc: {}1{}\n",
            "[".repeat(500),
            "{".repeat(500),
            "[".repeat(500),
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(too_deep(&fine), None);
        let (mut problems, mut warnings) = (vec![], vec![]);
        assert_eq!(
            parse("fine.yaml", &fine, &mut problems, &mut warnings).len(),
            1,
            "{problems:?}"
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
