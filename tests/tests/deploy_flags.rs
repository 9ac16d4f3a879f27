//! Every flag and environment variable the Kubernetes manifests give a
//! container is one its binary declares: a misspelt flag would stop the
//! pod, a misspelt variable would be silently ignored. Reads the rendered
//! overlays (`kubectl kustomize`; skipped, loudly, without kubectl) and
//! each binary's `--help` (clap lists flags and `[env: NAME=]`).
use std::{path::Path, process::Command};

use mesh_e2e::bins::Binaries;
use serde::Deserialize as _;
use serde_json::Value;

fn render(rel: &str) -> Option<Vec<Value>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel);
    let out = match Command::new("kubectl").arg("kustomize").arg(&dir).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: kubectl not runnable ({e}); it renders deploy/");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| Value::deserialize(d).unwrap())
            .filter(|v| !v.is_null())
            .collect(),
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// `--help` of `bin` (with a subcommand when the container runs one).
fn help(bin: &Path, sub: Option<&str>) -> String {
    let out = Command::new(bin)
        .args(sub)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(out.status.success(), "{} --help failed", bin.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn manifests_use_only_flags_and_variables_the_binaries_declare() {
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let dir = bins.agent.parent().unwrap().to_path_buf();
    let mut checked = 0;
    for rel in [
        "overlays/kind",
        "overlays/production",
        "waypoint",
        "cleanup/standard",
    ] {
        let Some(objs) = render(rel) else { return };
        for w in objs
            .iter()
            .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "DaemonSet")))
        {
            let pod = &w["spec"]["template"]["spec"];
            let containers = ["initContainers", "containers"]
                .iter()
                .flat_map(|k| pod[*k].as_array().into_iter().flatten());
            for c in containers {
                let command = strings(&c["command"]);
                let args = strings(&c["args"]);
                let bin = dir.join(&command[0]);
                if !command[0].starts_with("mesh") {
                    continue; // coreutils (the cleanup's rm and sleep)
                }
                assert!(bin.exists(), "{} not built", bin.display());
                let argv: Vec<&String> = command[1..].iter().chain(&args).collect();
                let sub = argv
                    .first()
                    .filter(|a| !a.starts_with('-'))
                    .map(|s| s.as_str());
                let text = help(&bin, sub);
                let flags = argv
                    .iter()
                    .filter(|a| a.starts_with("--"))
                    .map(|a| a.to_string());
                let vars = c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["name"].as_str().unwrap().to_string());
                for name in flags.chain(vars) {
                    let declared = if name.starts_with("--") {
                        text.split(|ch: char| ch.is_whitespace() || ch == ',' || ch == '=')
                            .any(|word| word == name)
                    } else {
                        text.contains(&format!("[env: {name}="))
                    };
                    checked += 1;
                    assert!(
                        declared,
                        "{rel}: container {} passes {name}, which `{} {} --help` does not declare",
                        c["name"],
                        command[0],
                        sub.unwrap_or("")
                    );
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} names checked");
}
