//! Every Istio YAML of the course notes in shared/seeds (copied one block
//! per file into tests/data/seeds, see its README) is accepted unmodified:
//! its Istio resources are kept raw, nothing is an error.
use std::path::Path;

use mesh_control::source::{load_files, SourceConfig};

#[test]
fn seed_yaml_is_accepted_unmodified() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seeds");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{files:?}");
    let mut raw_total = 0;
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        // Each block alone: several notes reuse a name (`reviews`) in one namespace.
        let snapshot = load_files(&[(name.clone(), text.clone())], &SourceConfig::default())
            .unwrap_or_else(|problems| panic!("{name}: {problems:#?}"));
        let istio_docs = text.matches("networking.istio.io/").count();
        assert_eq!(
            snapshot.raw.len(),
            istio_docs,
            "{name}: {:#?}",
            snapshot.raw
        );
        for raw in &snapshot.raw {
            assert!(
                [
                    "Gateway",
                    "VirtualService",
                    "DestinationRule",
                    "ServiceEntry"
                ]
                .contains(&raw.kind.as_str()),
                "{name}: {}",
                raw.kind
            );
            assert_eq!(raw.file, name);
        }
        raw_total += snapshot.raw.len();
        if name == "000-02.yaml" {
            // exportTo is indented with a tab in the notes.
            assert!(
                snapshot
                    .warnings
                    .iter()
                    .any(|w| w.contains("tab used for indentation")),
                "{:?}",
                snapshot.warnings
            );
            let export_to = &snapshot.raw[0].value["spec"]["exportTo"];
            assert_eq!(export_to[0].as_str(), Some("."));
        }
    }
    assert_eq!(raw_total, 22);
}
