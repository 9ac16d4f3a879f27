//! Every command the demos print for a person to try, and every command
//! the README shows for the running demo, works: each demo mesh is started
//! as `cargo xtask demo` starts it (same topology, same defaults), every
//! printed command runs through `sh` and its output is checked, and each
//! README command must be one of the printed ones. A user's resource named
//! like a default replaces it, and the demo leaves nothing behind.
//! Needs root; run by `cargo xtask test`, which builds the binaries first.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use mesh_lab::{demo_bookinfo, demo_guide, demo_l4};

/// `target/debug`: the test binary is `target/debug/deps/<name>-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shell commands of each `sh` block in the README's "While the demo
/// runs" part: the first is the bookinfo demo's, the second the L4 demo's.
fn readme_blocks() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme
        .find("While the demo runs")
        .expect("README: a 'While the demo runs' part");
    let end = start
        + readme[start..]
            .find("\n## ")
            .unwrap_or(readme.len() - start);
    let mut blocks: Vec<Vec<String>> = vec![];
    let mut in_block = false;
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_block = line.trim() == "```sh";
            if in_block {
                blocks.push(vec![]);
            }
            continue;
        }
        if in_block {
            let command = line.split(" #").next().unwrap_or("").trim();
            if let (false, Some(block)) = (command.is_empty(), blocks.last_mut()) {
                block.push(command.to_string());
            }
        }
    }
    assert_eq!(blocks.len(), 2, "README demo blocks: {blocks:?}");
    blocks
}

/// Every command of a README block is one the demo prints.
fn assert_readme_block_printed(block: &[String], hints: &[demo_guide::Hint]) {
    let dir = profile_dir();
    assert!(!block.is_empty());
    for command in block {
        assert!(
            hints
                .iter()
                .any(|h| demo_guide::readme_matches(command, &h.command, &dir)),
            "README shows `{command}`, which the demo does not print"
        );
    }
}

/// The bookinfo demos name their pods plainly (`sleep`, …): one at a time.
static PLAIN_NAMES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs every hint in order; panics naming each one that failed.
fn run_all(hints: &[demo_guide::Hint]) {
    let root = workspace_root();
    let mut failed = vec![];
    for h in hints {
        // Metrics and recent connections follow traffic: give a command a
        // few tries before calling it broken.
        let mut last = Err(anyhow::anyhow!("not run"));
        for _ in 0..20 {
            last = demo_guide::run(h, &root);
            if last.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        if let Err(e) = last {
            failed.push(format!("{e:#}"));
        }
    }
    assert!(
        failed.is_empty(),
        "commands that do not work:\n{}",
        failed.join("\n")
    );
}

/// The gateway is reachable from the host's root namespace through the
/// demo's `meshctl port-forward`: both forwards were announced as kubectl
/// announces them, and each root-namespace command (run above for its
/// body) answers 200 — HTTPS with `Host: bookinfo.example.com:8443`, a
/// port the gateway's server does not have, so it takes its `<host>:*`
/// domain.
fn assert_root_namespace_ingress(c: &demo_bookinfo::Demo) {
    use mesh_lab::demo_ingress::{HOST_HTTPS_PORT, HOST_HTTP_PORT};
    assert_eq!(
        c.ingress.lines,
        [
            format!("Forwarding from 127.0.0.1:{HOST_HTTP_PORT} -> 80"),
            format!("Forwarding from 127.0.0.1:{HOST_HTTPS_PORT} -> 443"),
        ]
    );
    let from_root: Vec<_> = demo_guide::ingress(c)
        .into_iter()
        .filter(|h| h.command.starts_with("curl "))
        .collect();
    assert_eq!(from_root.len(), 2, "{from_root:?}");
    for h in from_root {
        let command = format!("{} -o /dev/null -w '%{{http_code}}'", h.command);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "`{command}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Nothing named after the cluster is left: namespaces, pins, cgroups.
fn assert_gone(prefix: &str, pods: &[&str]) {
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    for line in netns.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            !name.starts_with(prefix) && !pods.contains(&name),
            "network namespace {name} left behind"
        );
    }
    assert!(!Path::new("/sys/fs/bpf")
        .join(format!("{prefix}-node1"))
        .exists());
    let cgroup = mesh_e2e::cgroup::cgroup2_mount().unwrap().join(prefix);
    assert!(!cgroup.exists(), "{} left behind", cgroup.display());
}

#[test]
fn bookinfo_demo_commands_work_and_the_readme_shows_only_them() {
    mesh_e2e::require_root();
    let _one = PLAIN_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let bins = mesh_lab::binaries_in(&profile_dir()).unwrap();
    let c = demo_bookinfo::start(bins, None).unwrap();
    let hints = demo_guide::bookinfo(&c);
    run_all(&hints);
    assert_readme_block_printed(&readme_blocks()[0], &hints);
    assert_root_namespace_ingress(&c);
    let prefix = c.underlay.name.trim_end_matches("-net").to_string();
    drop(c);
    assert_gone(
        &prefix,
        &[
            "sleep",
            "reviews-v1",
            "waypoint",
            "outside",
            "istio-ingressgateway",
        ],
    );
}

#[test]
fn l4_demo_commands_work_and_match_the_readme() {
    mesh_e2e::require_root();
    let _one = PLAIN_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let bins = mesh_lab::binaries_in(&profile_dir()).unwrap();
    let c = demo_l4::start(bins).unwrap();
    // Some traffic first, so metrics and connections have something to show.
    let reviews = c.pod("reviews").addr(9080).to_string();
    c.client(
        "productpage",
        &["echo", "--to", &reviews, "--bytes", "1024"],
    )
    .unwrap();
    let hints = demo_guide::l4(&c);
    run_all(&hints);
    assert_readme_block_printed(&readme_blocks()[1], &hints);
    let prefix = c.underlay.name.trim_end_matches("-net").to_string();
    drop(c);
    assert_gone(&prefix, &[]);
}

#[test]
fn a_user_resource_named_like_a_default_replaces_it() {
    mesh_e2e::require_root();
    // The course notes' form: the natural name, no namespace, all to v3.
    let user = BTreeMap::from([(
        "reviews-v3.yaml".to_string(),
        "apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v3
"
        .to_string(),
    )]);
    let _one = PLAIN_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let bins = mesh_lab::binaries_in(&profile_dir()).unwrap();
    let c = demo_bookinfo::start(bins, Some(&user)).unwrap();
    // The default canary (80/20 v1/v2) is gone; everyone gets v3.
    let mut last = serde_json::Value::Null;
    let wait = std::time::Duration::from_secs(30);
    mesh_testkit::eventually("the user's reviews VirtualService serves", wait, || {
        last = c
            .client(
                "sleep",
                &[
                    "http",
                    "--url",
                    "http://10.96.1.12:9080/",
                    "--count",
                    "10",
                    "--max-seconds",
                    "10",
                ],
            )
            .unwrap_or_default();
        last["versions"]["v3"] == 10
    });
    assert_eq!(
        last["versions"].as_object().map(|m| m.len()),
        Some(1),
        "{last}"
    );
}
