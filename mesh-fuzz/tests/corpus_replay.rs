//! Replays every stored corpus file (`fuzz/corpus/<target>/*`) through
//! every fuzz target: the libFuzzer targets' regression run, on stable and
//! without cargo-fuzz. A file found by one target is also fed to the
//! others, since inputs of one parser often reach another's edge cases.
use std::{fs, path::PathBuf};

fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn corpus_files() -> Vec<(String, PathBuf)> {
    let mut files = vec![];
    for (target, _) in mesh_fuzz::TARGETS {
        let dir = corpus_root().join(target);
        let entries = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {target} at {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push((target.to_string(), path));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_target_has_a_corpus_and_a_libfuzzer_binary() {
    let fuzz_dir = corpus_root().join("..");
    for (target, _) in mesh_fuzz::TARGETS {
        let seeds = fs::read_dir(corpus_root().join(target)).map_or(0, |d| d.count());
        assert!(seeds > 0, "fuzz/corpus/{target}/ is empty");
        let bin = fuzz_dir.join("fuzz_targets").join(format!("{target}.rs"));
        assert!(bin.is_file(), "{} is missing", bin.display());
    }
}

#[test]
fn every_corpus_file_passes_every_target() {
    let files = corpus_files();
    let mut failures = vec![];
    for (target, run) in mesh_fuzz::TARGETS {
        for (origin, path) in &files {
            let data = fs::read(path).unwrap();
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failures.push(format!("{target} panicked on {origin}/{}", path.display()));
            }
        }
    }
    eprintln!(
        "replayed {} corpus files through {} targets",
        files.len(),
        mesh_fuzz::TARGETS.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
