//! AuthorizationPolicy end to end inside the control plane: a watched
//! directory → the real xDS server on 127.0.0.1:0 → the real `mesh-xds`
//! client. A bad policy is rejected naming file, resource and field, and
//! the previous policies keep being served until it is fixed.
use std::{path::Path, sync::Arc, time::Duration};

use mesh_control::{
    serve::{self, ConnectedProxies, CsrSigner, ServerOptions},
    source::{watch_directory, SourceConfig},
};
use mesh_testkit::{eventually_watch, holds};
use mesh_xds::{
    proto::istio_security::{string_match::MatchType, Action, Scope},
    Backoff, XdsClient, XdsClientConfig, XdsSnapshot,
};
use tokio::net::TcpListener;

const INTERVAL: Duration = Duration::from_millis(20);
const LIMIT: Duration = Duration::from_secs(10);

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, serviceAccountName: web}
status: {podIP: 10.244.1.5}
"#;

const GOOD: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-from-shop, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from:
    - source: {namespaces: [shop], ipBlocks: ["10.244.0.0/16"]}
"#;

const BAD: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-from-shop, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from:
    - source: {namespaces: [shop]}
    - source: {ipBlocks: ["10.244.0.0/16", "10.245.0.0/16", "10.244.0.0/99"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {action: DENY, rules: [{}]}
"#;

const FIXED: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {action: DENY, rules: [{}]}
"#;

struct NoSigner;

impl CsrSigner for NoSigner {
    fn sign(&self, _: &str, _: Duration) -> Result<Vec<String>, String> {
        Err("not in this test".into())
    }
}

fn write(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn policy_names(snap: &XdsSnapshot) -> Vec<String> {
    snap.authorizations().map(|(n, _)| n.to_string()).collect()
}

fn listed_on_web(snap: &XdsSnapshot) -> Vec<String> {
    snap.workload("Kubernetes//Pod/shop/web-1")
        .map(|w| w.authorization_policies.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn bad_policy_is_rejected_and_the_previous_ones_keep_being_served() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "00-base.yaml", BASE);
    write(dir.path(), "10-authz.yaml", GOOD);
    let mut source = watch_directory(dir.path(), SourceConfig::default(), INTERVAL)
        .await
        .unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve::serve_listener(
        listener,
        None,
        source.state.clone(),
        Arc::new(NoSigner),
        Arc::new(ConnectedProxies::new()),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut config = XdsClientConfig::new(format!("http://{addr}"), "node-1");
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    let (client, mut rx) = XdsClient::spawn(config);

    let snap = eventually_watch("the first policy", LIMIT, &mut rx, |s| {
        holds(
            s.authorization("shop/web-from-shop").is_some() && s.workloads().count() == 1,
            s,
        )
    })
    .await;
    let policy = snap.authorization("shop/web-from-shop").unwrap();
    assert_eq!(policy.action, Action::Allow as i32);
    assert_eq!(policy.scope, Scope::WorkloadSelector as i32);
    let m = &policy.rules[0].clauses[0].matches[0];
    assert_eq!(
        m.namespaces[0].match_type,
        Some(MatchType::Exact("shop".into()))
    );
    assert_eq!(
        (m.source_ips[0].address.clone(), m.source_ips[0].length),
        (vec![10, 244, 0, 0], 16)
    );
    assert_eq!(listed_on_web(&snap), ["shop/web-from-shop"]);

    // A malformed CIDR in a changed policy, plus a new valid policy in the
    // same change: the whole change is rejected, naming the field.
    let reloads = *source.reloads.borrow();
    let served = source.state.borrow().clone();
    write(dir.path(), "10-authz.yaml", BAD);
    let error = eventually_watch(
        "a load error reported",
        LIMIT,
        &mut source.last_error,
        Option::clone,
    )
    .await;
    assert!(
        error.contains(r#"10-authz.yaml: AuthorizationPolicy shop/web-from-shop: spec.rules[0].from[1].source.ipBlocks[2]: "10.244.0.0/99" is not an IP address or CIDR: prefix length "99" is not 0-32"#),
        "{error}"
    );
    // The reload that rejected it has finished and published nothing, so
    // the server has nothing new to send.
    eventually_watch("the reload finished", LIMIT, &mut source.reloads, |n| {
        holds(*n > reloads, n)
    })
    .await;
    assert!(
        Arc::ptr_eq(&served, &source.state.borrow()),
        "a rejected reload published a state"
    );
    let snap = rx.borrow().clone();
    assert_eq!(policy_names(&snap), ["shop/web-from-shop"]);
    assert_eq!(
        snap.authorization("shop/web-from-shop").unwrap().rules[0].clauses[0]
            .matches
            .len(),
        1,
        "the old policy (one from entry) is still served"
    );
    assert_eq!(listed_on_web(&snap), ["shop/web-from-shop"]);

    // Fixed (the old policy removed, the new one kept): published.
    write(dir.path(), "10-authz.yaml", FIXED);
    let snap = eventually_watch("the fixed change", LIMIT, &mut rx, |s| {
        holds(
            s.authorization("shop/web-from-shop").is_none()
                && s.authorization("shop/deny-all").is_some(),
            s,
        )
    })
    .await;
    let deny = snap.authorization("shop/deny-all").unwrap();
    assert_eq!(
        (deny.action, deny.scope, deny.rules.len()),
        (Action::Deny as i32, Scope::Namespace as i32, 1)
    );
    assert!(deny.rules[0].clauses.is_empty());
    assert!(listed_on_web(&snap).is_empty());
    assert_eq!(*source.last_error.borrow(), None);

    tokio::time::timeout(LIMIT, client.stop()).await.unwrap();
    let _ = stop.send(());
    let _ = tokio::time::timeout(LIMIT, server).await;
    source.stop();
}
