//! The analyzer over whole directories: a clean bookinfo-like mesh in the
//! style of the course notes gives no finding at all, and every YAML block
//! of the course notes (tests/data/seeds) gives no Error.
use std::path::Path;

use mesh_control::{
    analyze::{analyze_dir, analyze_files, Severity},
    source::SourceConfig,
};

fn data(dir: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
}

#[test]
fn a_clean_mesh_has_no_findings() {
    let report = analyze_dir(&data("analyze")).unwrap();
    assert_eq!(report.findings, [], "{:#?}", report.findings);
}

#[test]
fn a_broken_copy_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![];
    for entry in std::fs::read_dir(data("analyze")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        // A typo'd subset and host, and a policy only a waypoint could enforce.
        let text = text
            .replace(
                "subset: v1\n      weight: 80",
                "subset: v3\n      weight: 80",
            )
            .replace("host: httpbin.org\n", "host: httpbin.com\n")
            .replace(
                "ports: [\"9080\"]",
                "ports: [\"9080\"]\n        methods: [GET]",
            );
        std::fs::write(dir.path().join(&name), &text).unwrap();
        files.push(name);
    }
    let report = analyze_dir(dir.path()).unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = report
        .findings
        .iter()
        .map(|f| (f.code, f.resource.as_str(), f.field.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "MESH0202",
                "AuthorizationPolicy tutorial/reviews-from-productpage",
                Some("spec.rules[0].to[0].operation.methods")
            ),
            (
                "MESH0101",
                "VirtualService tutorial/httpbin-ext",
                Some("spec.http[0].route[0].destination.host")
            ),
            (
                "MESH0102",
                "VirtualService tutorial/reviews",
                Some("spec.http[1].route[0].destination.subset")
            ),
        ]
    );
}

#[test]
fn course_note_yaml_has_no_errors() {
    let dir = data("seeds");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        // Each block alone: several notes reuse one name.
        let report = analyze_files(&[(name.clone(), text)], &SourceConfig::default());
        let errors: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(ToString::to_string)
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        checked += 1;
    }
    assert!(checked >= 20, "{checked}");
}
