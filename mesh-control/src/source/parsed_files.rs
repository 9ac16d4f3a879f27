//! The directory source's memory of parsed files: a reload parses again
//! only the files whose text changed. Parsing the YAML is most of a load's
//! cost (a 10 000-pod directory is megabytes of YAML), while a change
//! usually touches one small file; reading every file and comparing its
//! text stays cheap and needs no trust in modification times.
use std::{collections::HashMap, sync::Arc};

use super::{documents, Problem};

/// What parsing one file gave.
#[derive(Debug)]
pub(crate) struct ParsedFile {
    text: String,
    pub docs: Arc<Vec<documents::Document>>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// File name → its last parse.
#[derive(Debug, Default)]
pub struct ParsedFiles {
    files: HashMap<String, Arc<ParsedFile>>,
    /// Files parsed (not reused) since creation.
    parses: u64,
}

impl ParsedFiles {
    /// Parses `files` (name, text), reusing the parse of every file whose
    /// text is unchanged; forgets files not among them. In `files` order.
    pub(crate) fn parse(&mut self, files: Vec<(String, String)>) -> Vec<Arc<ParsedFile>> {
        let mut kept = HashMap::with_capacity(files.len());
        let mut out = Vec::with_capacity(files.len());
        for (name, text) in files {
            let parsed = match self.files.remove(&name) {
                Some(p) if p.text == text => p,
                _ => {
                    self.parses += 1;
                    let (mut problems, mut warnings) = (vec![], vec![]);
                    let docs = documents::parse(&name, &text, &mut problems, &mut warnings);
                    Arc::new(ParsedFile {
                        text,
                        docs: Arc::new(docs),
                        problems,
                        warnings,
                    })
                }
            };
            out.push(Arc::clone(&parsed));
            kept.insert(name, parsed);
        }
        self.files = kept;
        out
    }

    /// Files parsed so far (a reused parse does not count).
    pub fn parses(&self) -> u64 {
        self.parses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n")
    }

    #[test]
    fn only_changed_files_are_parsed_again() {
        let mut cache = ParsedFiles::default();
        let files = |b: &str| {
            vec![
                ("a.yaml".to_string(), pod("a")),
                ("b.yaml".to_string(), pod(b)),
            ]
        };
        let first = cache.parse(files("b"));
        assert_eq!(cache.parses(), 2);
        let same = cache.parse(files("b"));
        assert_eq!(cache.parses(), 2, "nothing changed: nothing parsed");
        assert!(Arc::ptr_eq(&first[0], &same[0]));
        let changed = cache.parse(files("b2"));
        assert_eq!(cache.parses(), 3, "only b.yaml again");
        assert!(Arc::ptr_eq(&first[0], &changed[0]));
        assert_eq!(changed[1].docs[0].value["metadata"]["name"], "b2");
        // A file that went away is forgotten: back again, it is parsed.
        cache.parse(vec![("a.yaml".to_string(), pod("a"))]);
        cache.parse(files("b2"));
        assert_eq!(cache.parses(), 4);
    }
}
