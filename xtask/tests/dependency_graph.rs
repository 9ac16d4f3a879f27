//! `cargo xtask` must compile on a bare machine, before set-up has
//! installed anything. Read from `cargo metadata`, this fails when xtask's
//! build graph (normal and build dependencies, for this host) gains a
//! workspace crate not listed in [`BARE_WORKSPACE_CRATES`], or a crate
//! with a build script that is not known to need nothing outside Cargo (a
//! `protoc`, a C library, `pkg-config`…). A listed workspace crate's own
//! dependencies are in the graph, so they are checked the same way.
//! A new build script is reviewed and added to [`PURE_BUILD_SCRIPTS`]
//! with the reason, or the dependency goes to `mesh-lab` instead.
use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use serde_json::Value;

/// Workspace crates xtask may depend on: each needs nothing set-up
/// installs (what they depend on is checked like xtask's own dependencies).
const BARE_WORKSPACE_CRATES: &[(&str, &str)] = &[(
    "xtask-cli",
    "the options and console helpers xtask shares with mesh-lab",
)];

/// Crates whose build script only inspects rustc or sets cfgs.
const PURE_BUILD_SCRIPTS: &[(&str, &str)] = &[
    ("anyhow", "probes rustc for backtrace support"),
    ("libc", "sets cfgs from the rustc version and target"),
    ("memoffset", "probes the rustc version (autocfg)"),
    ("nix", "sets cfg aliases (cfg_aliases)"),
    ("proc-macro2", "probes rustc features"),
    ("quote", "probes the rustc version"),
];

fn metadata() -> Value {
    let host = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Package id → package, and the ids `root`'s build needs (itself included).
fn graph_of(meta: &Value, root: &str) -> (BTreeMap<String, Value>, BTreeSet<String>) {
    let packages: BTreeMap<String, Value> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_string(), p.clone()))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = packages
        .values()
        .find(|p| p["name"] == root)
        .map(|p| p["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no package {root}"));
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        for dep in nodes[id.as_str()]["deps"].as_array().unwrap() {
            // Dev-dependencies are not built by `cargo xtask`.
            let built = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if built {
                todo.push(dep["pkg"].as_str().unwrap().to_string());
            }
        }
    }
    (packages, seen)
}

/// What in `root`'s build graph could stop it from compiling on a bare
/// machine, one line each.
fn bare_machine_problems(meta: &Value, root: &str) -> Vec<String> {
    let (packages, graph) = graph_of(meta, root);
    assert!(graph.len() > 5, "{root}'s graph looks empty: {graph:?}");
    let mut problems = vec![];
    for id in &graph {
        let p = &packages[id];
        let name = p["name"].as_str().unwrap();
        if name == root {
            continue;
        }
        if p["source"].is_null() && !BARE_WORKSPACE_CRATES.iter().any(|(n, _)| *n == name) {
            problems.push(format!(
                "{name}: a workspace (path) crate; it may need what set-up installs"
            ));
        }
        let has_build_script = p["targets"].as_array().unwrap().iter().any(|t| {
            t["kind"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "custom-build")
        });
        if has_build_script && !PURE_BUILD_SCRIPTS.iter().any(|(n, _)| *n == name) {
            problems.push(format!(
                "{name}: has a build script not known to need nothing outside Cargo"
            ));
        }
    }
    problems
}

#[test]
fn xtask_depends_on_no_workspace_crate_and_no_build_script_that_needs_a_system_tool() {
    let problems = bare_machine_problems(&metadata(), "xtask");
    assert!(
        problems.is_empty(),
        "xtask must build on a bare machine:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_finds_workspace_crates_and_build_scripts_where_they_are() {
    // mesh-lab (the demo and benchmarks) needs the workspace, and through
    // it mesh-xds's protobuf build and the agent's eBPF build: the same
    // check from there must report them, or the test above proves nothing.
    let problems = bare_machine_problems(&metadata(), "mesh-lab");
    for expected in [
        "mesh-e2e: a workspace (path) crate",
        "mesh-xds: has a build script",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} not reported: {problems:?}"
        );
    }
}
