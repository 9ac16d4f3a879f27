//! Rendering shortcuts and assertions several manifest tests share.
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

pub fn kubectl_or_skip(test: &str) -> Option<PathBuf> {
    match kubectl() {
        Ok(bin) => Some(bin),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why} (kubectl with kustomize renders deploy/)");
            None
        }
    }
}

pub fn render(kubectl: &Path, rel: &str) -> Vec<Value> {
    parse(&render_text(kubectl, &deploy_dir().join(rel)))
}

/// The pod's only token is the projected istio-ca one, at the contract's
/// path, named by the container's `env_var`.
pub fn assert_projected_token(pod: &Value, c: &Value, env_var: &str, ctx: &str) {
    let volumes = pod["volumes"].as_array().unwrap();
    let tokens: Vec<&Value> = volumes
        .iter()
        .flat_map(|v| v["projected"]["sources"].as_array().into_iter().flatten())
        .filter_map(|s| s.get("serviceAccountToken"))
        .collect();
    assert_eq!(tokens.len(), 1, "{ctx}: one projected token");
    assert_eq!(tokens[0]["audience"], "istio-ca", "{ctx}: token audience");
    assert_eq!(tokens[0]["expirationSeconds"], 3600, "{ctx}");
    let vol = volumes
        .iter()
        .find(|v| {
            v["projected"]["sources"][0]
                .get("serviceAccountToken")
                .is_some()
        })
        .unwrap();
    let m = mount(c, str_of(&vol["name"], "volume")).expect("token mounted");
    let file = format!(
        "{}/{}",
        str_of(&m["mountPath"], "mountPath"),
        str_of(&tokens[0]["path"], "path")
    );
    assert_eq!(file, "/var/run/secrets/tokens/mesh-token", "{ctx}");
    assert_eq!(env(c, env_var), Some(file.as_str()), "{ctx}: {env_var}");
}

/// Pod Security "restricted" fields, for pods that need nothing more.
pub fn assert_restricted(pod: &Value, ctx: &str) {
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{ctx}");
    assert_ne!(psc["runAsUser"], 0, "{ctx}");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{ctx}");
    assert_ne!(pod["hostNetwork"], true, "{ctx}");
    for c in all_containers(pod) {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{ctx}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{ctx}");
        assert_ne!(sc["privileged"], true, "{ctx}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{ctx}");
        assert!(
            sc["capabilities"].get("add").is_none(),
            "{ctx}: no added capability"
        );
        assert!(sc.get("runAsUser").is_none(), "{ctx}: pod-level user only");
    }
    let host_paths = pod["volumes"].as_array().into_iter().flatten();
    assert!(
        host_paths.filter(|v| v.get("hostPath").is_some()).count() == 0,
        "{ctx}"
    );
}

/// Renders the waypoint base through a throw-away overlay (namespace and
/// name prefix), as a user would.
pub fn render_waypoint_overlay(kubectl: &Path, namespace: &str, prefix: &str) -> Vec<Value> {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("waypoint-{prefix}{namespace}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Kustomize refuses absolute paths to bases: go up to / and back down.
    let up = "../".repeat(dir.components().count() - 1);
    let base = format!(
        "{up}{}",
        deploy_dir()
            .join("waypoint")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!("namespace: {namespace}\nnamePrefix: {prefix}\nresources:\n- {base}\n"),
    )
    .unwrap();
    parse(&render_text(kubectl, &dir))
}
