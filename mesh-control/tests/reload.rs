//! Hot reload of the directory source: valid changes are published, an
//! invalid one is rejected with its message while the previous state stays,
//! and fixing it publishes again. Polls every 20 ms; every wait is bounded.
use std::{path::Path, sync::Arc, time::Duration};

use mesh_control::{
    model::MeshState,
    source::{watch_directory, LoadError, SourceConfig},
};
use tokio::sync::watch;

const INTERVAL: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(10);

const BASE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels: {istio.io/dataplane-mode: ambient}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n";

fn pod(name: &str, ip: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{nodeName: node-1}}\nstatus: {{podIP: {ip}}}\n")
}

/// Replaces `name` atomically, as an operator's tooling should.
fn write(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn names(state: &MeshState) -> Vec<String> {
    state.workloads.values().map(|w| w.name.clone()).collect()
}

async fn next_state(rx: &mut watch::Receiver<Arc<MeshState>>) -> Arc<MeshState> {
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .expect("no state published in time")
        .unwrap();
    rx.borrow_and_update().clone()
}

#[tokio::test]
async fn publishes_valid_changes_and_keeps_the_last_good_state() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "00-base.yaml", BASE);
    write(dir.path(), "10-a.yaml", &pod("a", "10.244.0.1"));
    let mut source = watch_directory(dir.path(), SourceConfig::default(), INTERVAL)
        .await
        .unwrap();
    let mut state = source.state.clone();
    assert_eq!(names(&state.borrow_and_update()), ["a"]);
    assert_eq!(*source.last_error.borrow(), None);

    // A valid change is published.
    write(dir.path(), "20-b.yaml", &pod("b", "10.244.0.2"));
    assert_eq!(names(&*next_state(&mut state).await), ["a", "b"]);

    // A malformed file: rejected, the problem exposed, the state kept.
    write(dir.path(), "30-c.yaml", &pod("c", "10.244.0.x"));
    tokio::time::timeout(WAIT, source.last_error.wait_for(Option::is_some))
        .await
        .expect("no load error reported in time")
        .unwrap();
    let error = source.last_error.borrow_and_update().clone().unwrap();
    assert!(
        error.contains(
            r#"30-c.yaml: Pod default/c: status.podIP: "10.244.0.x" is not an IP address"#
        ),
        "{error}"
    );
    assert!(!state.has_changed().unwrap());
    assert_eq!(names(&state.borrow()), ["a", "b"]);

    // Fixed: published, and the error cleared.
    write(dir.path(), "30-c.yaml", &pod("c", "10.244.0.3"));
    assert_eq!(names(&*next_state(&mut state).await), ["a", "b", "c"]);
    tokio::time::timeout(WAIT, source.last_error.wait_for(Option::is_none))
        .await
        .expect("error not cleared")
        .unwrap();

    // Rewriting identical content or adding a raw-only resource reloads
    // but publishes no new mesh state; the raw channel sees the latter.
    write(dir.path(), "20-b.yaml", &pod("b", "10.244.0.2"));
    let mut raw = source.raw.clone();
    raw.borrow_and_update();
    write(
        dir.path(),
        "40-sidecar.yaml",
        // Not a VirtualService or ServiceEntry: those are typed into the
        // mesh state now.
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: r}\nspec: {egress: [{hosts: [\"./*\"]}]}\n",
    );
    tokio::time::timeout(WAIT, raw.changed())
        .await
        .expect("raw not published")
        .unwrap();
    assert_eq!(raw.borrow().len(), 1);
    assert!(!state.has_changed().unwrap());

    // Removing a file is a change too.
    std::fs::remove_file(dir.path().join("10-a.yaml")).unwrap();
    assert_eq!(names(&*next_state(&mut state).await), ["b", "c"]);

    // The directory vanishing is an error; the state stays.
    let path = dir.path().to_path_buf();
    dir.close().unwrap();
    tokio::time::timeout(WAIT, source.last_error.wait_for(Option::is_some))
        .await
        .expect("no error for a removed directory")
        .unwrap();
    let error = source.last_error.borrow().clone().unwrap();
    assert_eq!(
        error,
        format!("configuration directory {}: does not exist", path.display())
    );
    assert_eq!(names(&state.borrow()), ["b", "c"]);
    source.stop();
}

#[tokio::test]
async fn startup_needs_a_valid_directory() {
    let err = watch_directory(
        "/nonexistent/mesh-config",
        SourceConfig::default(),
        INTERVAL,
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, LoadError::Directory { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &pod("a", "999.0.0.1"));
    let err = watch_directory(dir.path(), SourceConfig::default(), INTERVAL)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("a.yaml: Pod default/a: status.podIP"),
        "{err}"
    );
}
