//! Rendering and schema validation of the `deploy/` kustomizations, and
//! small readers over the rendered objects, for `deploy_manifests.rs`.
#![allow(dead_code)]

pub mod checks;
pub mod rbac;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize as _;
use serde_json::Value;

/// `deploy/` of this workspace.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("mesh-e2e lives in the workspace")
        .join("deploy")
}

/// `kubectl` if it runs, else the reason (the tests then skip, loudly).
pub fn kubectl() -> Result<PathBuf, String> {
    let bin = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"));
    match Command::new(&bin).args(["version", "--client"]).output() {
        Ok(out) if out.status.success() => Ok(bin),
        Ok(out) => Err(format!(
            "{} version --client failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("{} not runnable: {e}", bin.display())),
    }
}

/// Every directory under `deploy/` holding a kustomization that can be
/// built on its own (Components cannot: they only act inside one).
pub fn kustomizations() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let file = dir.join("kustomization.yaml");
        if let Ok(text) = std::fs::read_to_string(&file) {
            if !text.contains("\nkind: Component") {
                out.push(dir.to_path_buf());
            }
        }
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        for sub in entries {
            walk(&sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), &mut out);
    out
}

/// The YAML `kubectl kustomize` prints for `dir`.
pub fn render_text(kubectl: &Path, dir: &Path) -> String {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl kustomize {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kustomize prints UTF-8")
}

/// Every document of a multi-document YAML text.
pub fn parse(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Runs `kubernetes-validate --strict` (unknown fields are errors) for one
/// Kubernetes version over `file`; panics with its report on any error.
/// Returns the `kind apiVersion` pairs it had no schema for (custom
/// resources), which the caller must account for.
pub fn validate(validator: &Path, file: &Path, k8s_version: &str) -> BTreeSet<String> {
    let out = Command::new(validator)
        .args(["--strict", "--kubernetes-version", k8s_version])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", validator.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !report.contains("ERROR"),
        "{} does not validate against Kubernetes {k8s_version} (strict):\n{report}",
        file.display()
    );
    report
        .lines()
        .filter_map(|l| {
            let rest = l.split("Couldn't find schema for kind ").nth(1)?;
            let (kind, rest) = rest.split_once(" with api version ")?;
            let api = rest.split_whitespace().next()?;
            Some(format!("{kind} {api}"))
        })
        .collect()
}

/// Objects of `kind` (any group).
pub fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one object of `kind` named `name`.
pub fn one<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> = objs
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name}, found {}",
        found.len()
    );
    found[0]
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

/// A JSON array as strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The pod template spec of a Deployment or DaemonSet.
pub fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

/// Containers and init containers of a pod spec.
pub fn all_containers(pod: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for key in ["initContainers", "containers"] {
        if let Some(list) = pod[key].as_array() {
            all.extend(list.iter());
        }
    }
    all
}

pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    all_containers(pod)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The value of env var `name` in `container` (plain `value` only).
pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?
        .get("value")?
        .as_str()
}

/// hostPath of the pod volume `name`.
pub fn host_path<'a>(pod: &'a Value, name: &str) -> Option<&'a str> {
    pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)?["hostPath"]["path"]
        .as_str()
}

/// The volumeMount of `volume` in `container`.
pub fn mount<'a>(container: &'a Value, volume: &str) -> Option<&'a Value> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == volume)
}

/// True when every `matchLabels` entry of `selector` is among `labels`.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let Some(wanted) = selector.as_object() else {
        return false;
    };
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}
