//! mesh-control's Kubernetes source (`--source kubernetes`) against the
//! fake API server (tests/src/fake_apiserver), through the real binary and
//! real Delta ADS / CA gRPC calls (docs/kubernetes.md,
//! docs/contracts/authentication.md):
//! identical xDS with the directory source for the same YAML, live
//! namespace labels, relist after 410, per-resource rejection (Event +
//! status condition, last good version kept), TokenReview authentication.
//!
//! Needs `cargo build -p mesh-control` first (or MESH_CONTROL_BIN).
use std::{collections::BTreeMap, time::Duration};

use mesh_e2e::{
    fake_apiserver::FakeApiServer,
    local_control::LocalControl,
    xds_fetch::{fetch, AsNode, FetchError, Fetched},
};
use mesh_testkit::{eventually_async, try_eventually_async};
use mesh_xds::{
    proto::{
        envoy_discovery::Resource,
        istio_ca::{
            istio_certificate_service_client::IstioCertificateServiceClient,
            IstioCertificateRequest,
        },
        wkt::Any,
    },
    XdsResource, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL,
    LISTENER_TYPE_URL, ROUTE_TYPE_URL,
};
use serde_json::json;
use sets::{demo_set, seed_set, write_config};

mod gateway_api;
mod sets;

const STARTUP: Duration = Duration::from_secs(40);
const FETCH: Duration = Duration::from_secs(10);
/// Bound of every "until xDS shows it" wait.
const CONVERGE: Duration = Duration::from_secs(30);

const ALL_TYPES: [&str; 6] = [
    ADDRESS_TYPE_URL,
    AUTHORIZATION_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_TYPE_URL,
    CLUSTER_TYPE_URL,
    ENDPOINT_TYPE_URL,
];

/// Tokens the fake's TokenReview knows.
const AGENT_NODE_1: &str = "token-agent-node-1";
const WAYPOINT_TOKEN: &str = "token-waypoint";
const POD_A: &str = "token-pod-a";

/// The fake loaded with the set, its tokens, and mesh-control on it.
struct KubeSetup {
    control: LocalControl,
    fake: FakeApiServer,
    _dir: tempfile::TempDir,
}

async fn kube_setup(extra_args: &[&str]) -> KubeSetup {
    kube_setup_with(seed_set(), extra_args).await
}

async fn kube_setup_with(set: Vec<(String, String)>, extra_args: &[&str]) -> KubeSetup {
    let dir = tempfile::tempdir().unwrap();
    let files = write_config(&dir.path().join("config"), set);
    let fake = FakeApiServer::start().await.unwrap();
    for (name, text) in &files {
        fake.load_yaml(text)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    fake.add_token(
        AGENT_NODE_1,
        "system:serviceaccount:istio-system:mesh-agent",
        &[("authentication.kubernetes.io/node-name", "node-1")],
    );
    fake.add_token(
        WAYPOINT_TOKEN,
        "system:serviceaccount:default:waypoint",
        &[("authentication.kubernetes.io/pod-name", "waypoint-0")],
    );
    fake.add_token(POD_A, "system:serviceaccount:default:a", &[]);
    let kubeconfig = fake.kubeconfig(dir.path()).unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap().to_string();
    let mut args = vec![
        "--source",
        "kubernetes",
        "--kubeconfig",
        kubeconfig.as_str(),
    ];
    args.extend_from_slice(extra_args);
    let control = tokio::task::block_in_place(|| LocalControl::start(dir.path(), &args, STARTUP))
        .unwrap_or_else(|e| panic!("{e:#}"));
    KubeSetup {
        control,
        fake,
        _dir: dir,
    }
}

fn agent() -> AsNode {
    AsNode::agent("node-1").with_token(AGENT_NODE_1)
}

fn waypoint() -> AsNode {
    AsNode::waypoint("default", "waypoint").with_token(WAYPOINT_TOKEN)
}

/// What the node subscribes to: an agent the workload types, a waypoint
/// everything.
fn types_of(node: &AsNode) -> &'static [&'static str] {
    if node.metadata.contains_key("WAYPOINT") {
        &ALL_TYPES
    } else {
        &ALL_TYPES[..2]
    }
}

async fn fetch_all(control: &LocalControl, node: &AsNode) -> Fetched {
    fetch(&control.endpoint(), node, types_of(node), FETCH)
        .await
        .unwrap_or_else(|e| panic!("fetch as {}: {e}\n{}", node.id, control.tail()))
}

/// Fetches until `done` holds (at most [`CONVERGE`]); the last fetch.
async fn fetch_until(
    control: &LocalControl,
    node: &AsNode,
    what: &str,
    done: impl Fn(&Fetched) -> bool,
) -> Fetched {
    let fetched = try_eventually_async(&format!("xDS showing {what}"), CONVERGE, || async {
        let fetched = fetch_all(control, node).await;
        if done(&fetched) {
            Ok(fetched)
        } else {
            let names: BTreeMap<&String, Vec<&String>> = fetched
                .iter()
                .map(|(t, r)| (t, r.keys().collect()))
                .collect();
            Err(format!("{names:?}"))
        }
    })
    .await;
    fetched.unwrap_or_else(|e| panic!("{e}\n{}", control.warnings()))
}

fn decode(type_url: &str, name: &str, bytes: &[u8]) -> XdsResource {
    let resource = Resource {
        name: name.into(),
        resource: Some(Any {
            type_url: type_url.into(),
            value: bytes.to_vec(),
        }),
        ..Default::default()
    };
    mesh_xds::client::decode_resource(type_url, &resource)
        .unwrap_or_else(|e| panic!("{type_url} {name}: {e:?}"))
}

/// The HBONE-or-not tunnel protocol of a workload (0 NONE, 1 HBONE).
fn tunnel_protocol(fetched: &Fetched, uid: &str) -> Option<i32> {
    let bytes = fetched.get(ADDRESS_TYPE_URL)?.get(uid)?;
    match decode(ADDRESS_TYPE_URL, uid, bytes) {
        XdsResource::Workload(w) => Some(w.tunnel_protocol),
        _ => None,
    }
}

/// Names per type, and the decoded form of every resource whose bytes
/// differ: what to read when the two sources disagree.
fn differences(a: &Fetched, b: &Fetched) -> String {
    let mut out = String::new();
    for type_url in ALL_TYPES {
        let empty = BTreeMap::new();
        let (ra, rb) = (
            a.get(type_url).unwrap_or(&empty),
            b.get(type_url).unwrap_or(&empty),
        );
        for name in ra
            .keys()
            .chain(rb.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            match (ra.get(name), rb.get(name)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => out.push_str(&format!(
                    "{type_url} {name} differs:\n  directory: {:?}\n  kubernetes: {:?}\n",
                    decode(type_url, name, x),
                    decode(type_url, name, y)
                )),
                (Some(_), None) => out.push_str(&format!("{type_url} {name}: directory only\n")),
                (None, _) => out.push_str(&format!("{type_url} {name}: kubernetes only\n")),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sources_serve_identical_xds() {
    for (set, files) in [("seed", seed_set()), ("demo", demo_set())] {
        identical_xds(set, files).await;
    }
}

/// Runs both sources on `files` and compares what an agent and the
/// waypoint get.
async fn identical_xds(set: &str, files: Vec<(String, String)>) {
    let kube = kube_setup_with(files.clone(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    write_config(&config, files);
    let config = config.to_str().unwrap().to_string();
    let directory = tokio::task::block_in_place(|| {
        LocalControl::start(
            dir.path(),
            &["--source", "directory", "--config-dir", &config],
            STARTUP,
        )
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    for (label, node) in [("agent", agent()), ("waypoint", waypoint())] {
        let from_kube = fetch_all(&kube.control, &node).await;
        let plain = AsNode {
            token: None,
            ..node
        };
        let from_dir = fetch_all(&directory, &plain).await;
        // Guard against comparing two empty answers.
        assert!(
            from_dir[ADDRESS_TYPE_URL].contains_key("Kubernetes//Pod/default/productpage-v1"),
            "{:?}",
            from_dir[ADDRESS_TYPE_URL].keys()
        );
        if label == "waypoint" {
            assert!(!from_dir[LISTENER_TYPE_URL].is_empty(), "waypoint listener");
            assert!(!from_dir[ROUTE_TYPE_URL].is_empty(), "waypoint routes");
        }
        if label == "waypoint" && set == "demo" {
            // The demo's VirtualService reached the waypoint's routes.
            assert!(routes_text(&from_dir).contains("jason"), "demo routes");
        }
        if set == "seed" {
            // The EndpointSlice made pod `a` serve the selector-less Service.
            let a = "Kubernetes//Pod/default/a";
            match decode(ADDRESS_TYPE_URL, a, &from_dir[ADDRESS_TYPE_URL][a]) {
                XdsResource::Workload(w) => assert!(
                    w.services.keys().any(|k| k.contains("legacy-db")),
                    "{:?}",
                    w.services
                ),
                other => panic!("{other:?}"),
            }
        }
        let diff = differences(&from_dir, &from_kube);
        assert!(diff.is_empty(), "{set} set, as {label}:\n{diff}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_label_changes_tunnel_protocol_live() {
    let kube = kube_setup(&[]).await;
    let app = "Kubernetes//Pod/flip/app";
    let before = fetch_all(&kube.control, &agent()).await;
    assert_eq!(
        tunnel_protocol(&before, app),
        Some(0),
        "flip is not ambient"
    );
    let mut ns = kube.fake.get("Namespace", "", "flip").unwrap();
    ns["metadata"]["labels"] = json!({"istio.io/dataplane-mode": "ambient"});
    kube.fake.apply(ns.clone()).unwrap();
    fetch_until(&kube.control, &agent(), "flip/app on HBONE", |f| {
        tunnel_protocol(f, app) == Some(1)
    })
    .await;
    // And back.
    ns["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("istio.io/dataplane-mode");
    kube.fake.apply(ns).unwrap();
    fetch_until(&kube.control, &agent(), "flip/app off HBONE", |f| {
        tunnel_protocol(f, app) == Some(0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relists_after_compaction_and_serves_the_new_state() {
    let kube = kube_setup(&[]).await;
    let lists_before: BTreeMap<String, usize> = kube
        .fake
        .requests()
        .into_iter()
        .filter(|(k, _)| k.starts_with("LIST "))
        .collect();
    // Every kind of contract section 4 was listed once.
    assert_eq!(lists_before.len(), 14, "{lists_before:?}");
    assert!(lists_before.values().all(|n| *n == 1), "{lists_before:?}");
    kube.fake.compact();
    kube.fake.close_watches();
    kube.fake
        .apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "c", "namespace": "default", "labels": {"app": "c"}},
            "spec": {"serviceAccountName": "c", "nodeName": "node-1"},
            "status": {"podIP": "10.244.1.31"}}))
        .unwrap();
    kube.fake.delete("Pod", "default", "b").unwrap();
    fetch_until(&kube.control, &agent(), "pod c added, pod b gone", |f| {
        let a = &f[ADDRESS_TYPE_URL];
        a.contains_key("Kubernetes//Pod/default/c") && !a.contains_key("Kubernetes//Pod/default/b")
    })
    .await;
    // Every kind relists (each watcher on its own backoff).
    let relisted = try_eventually_async("every kind relisted", CONVERGE, || async {
        let now = kube.fake.requests();
        let pending: Vec<&String> = lists_before
            .keys()
            .filter(|k| now.get(*k).copied().unwrap_or(0) < 2)
            .collect();
        if pending.is_empty() {
            Ok(())
        } else {
            Err(format!("not relisted: {pending:?}"))
        }
    })
    .await;
    relisted.unwrap_or_else(|e| panic!("{e}\n{}", kube.control.warnings()));
}

/// The `details` VirtualService (served by the waypoint: its Service uses
/// it), valid with a `timeout`, or with a regex that does not compile.
fn details_vs(timeout: &str, regex: Option<&str>) -> serde_json::Value {
    let mut route = json!({"timeout": timeout, "route": [{"destination": {"host": "details"}}]});
    if let Some(regex) = regex {
        route["match"] = json!([{"uri": {"regex": regex}}]);
    }
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "details", "namespace": "default"},
        "spec": {"hosts": ["details"], "http": [route]}})
}

/// The waypoint's routes, decoded, as text: to look for a timeout.
fn routes_text(fetched: &Fetched) -> String {
    fetched[ROUTE_TYPE_URL]
        .iter()
        .map(|(name, bytes)| format!("{:?}", decode(ROUTE_TYPE_URL, name, bytes)))
        .collect()
}

/// Waits (bounded) until the `details` VirtualService's status has an
/// `Accepted` condition with `status`.
async fn wait_accepted(kube: &KubeSetup, status: &str) {
    let what = format!("status Accepted={status}");
    eventually_async(&what, CONVERGE, || async {
        let object = kube
            .fake
            .get("VirtualService", "default", "details")
            .unwrap();
        let conditions = object["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c["type"] == "Accepted" && c["status"] == status)
        {
            Ok(())
        } else {
            Err(format!(
                "{}; patches {:?}",
                object["status"],
                kube.fake.statuses()
            ))
        }
    })
    .await;
}

fn rejections(kube: &KubeSetup) -> Vec<serde_json::Value> {
    kube.fake
        .events()
        .into_iter()
        .filter(|e| e["reason"] == "Rejected" && e["involvedObject"]["name"] == "details")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_resource_is_rejected_alone_and_its_last_good_version_serves() {
    let kube = kube_setup(&[]).await;
    kube.fake.apply(details_vs("7s", None)).unwrap();
    let before = fetch_until(&kube.control, &waypoint(), "the 7s timeout", |f| {
        routes_text(f).contains("seconds: 7,")
    })
    .await;
    kube.fake
        .apply(details_vs("8s", Some("(unclosed")))
        .unwrap();
    // A valid change made after it still lands.
    kube.fake
        .apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "c", "namespace": "default"},
            "spec": {"serviceAccountName": "c", "nodeName": "node-1"},
            "status": {"podIP": "10.244.1.31"}}))
        .unwrap();
    let after = fetch_until(&kube.control, &waypoint(), "pod c", |f| {
        f[ADDRESS_TYPE_URL].contains_key("Kubernetes//Pod/default/c")
    })
    .await;
    // The waypoint still serves the last good `details` (7s).
    assert_eq!(before[ROUTE_TYPE_URL], after[ROUTE_TYPE_URL]);
    assert_eq!(before[LISTENER_TYPE_URL], after[LISTENER_TYPE_URL]);
    // A Warning Event naming the field, and Accepted=False on the status.
    let rejected = try_eventually_async("a Rejected event", CONVERGE, || async {
        if rejections(&kube).is_empty() {
            Err(format!("events {:?}", kube.fake.events()))
        } else {
            Ok(())
        }
    })
    .await;
    rejected.unwrap_or_else(|e| panic!("{e}\n{}", kube.control.warnings()));
    let rejected = rejections(&kube).remove(0);
    assert_eq!(rejected["type"], "Warning");
    assert_eq!(rejected["involvedObject"]["kind"], "VirtualService");
    let message = rejected["message"].as_str().unwrap_or_default();
    assert!(message.contains("regex"), "the field is named: {message}");
    wait_accepted(&kube, "False").await;
    let condition = kube
        .fake
        .get("VirtualService", "default", "details")
        .unwrap()["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .cloned()
        .unwrap();
    assert_eq!(condition["reason"], "Invalid", "{condition}");
    // A valid version is served again and marked accepted.
    kube.fake.apply(details_vs("9s", None)).unwrap();
    fetch_until(&kube.control, &waypoint(), "the 9s timeout", |f| {
        routes_text(f).contains("seconds: 9,")
    })
    .await;
    wait_accepted(&kube, "True").await;
    // One event for the one rejected version, not one per rebuild.
    assert_eq!(rejections(&kube).len(), 1, "{:?}", kube.fake.events());
    // Regressing after a good version is reported again.
    kube.fake
        .apply(details_vs("10s", Some("[unclosed")))
        .unwrap();
    wait_accepted(&kube, "False").await;
    eventually_async("a second Rejected event", CONVERGE, || async {
        if rejections(&kube).len() < 2 {
            Err(format!("events {:?}", kube.fake.events()))
        } else {
            Ok(())
        }
    })
    .await;
    let still = fetch_all(&kube.control, &waypoint()).await;
    assert!(
        routes_text(&still).contains("seconds: 9,"),
        "9s still served"
    );
}

fn csr(identity: &str) -> String {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::Ia5String::try_from(identity).unwrap(),
    )];
    params
        .serialize_request(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
        .unwrap()
}

/// `CreateCertificate` for `identity`, with `token` as bearer if given.
async fn certificate(
    control: &LocalControl,
    token: Option<&str>,
    identity: &str,
) -> Result<Vec<String>, tonic::Status> {
    let mut client = tokio::time::timeout(
        FETCH,
        IstioCertificateServiceClient::connect(control.endpoint()),
    )
    .await
    .expect("CA connect timed out")
    .expect("CA connect");
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr: csr(identity),
        validity_duration: 600,
        metadata: None,
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    tokio::time::timeout(FETCH, client.create_certificate(request))
        .await
        .expect("CreateCertificate timed out")
        .map(|r| r.into_inner().cert_chain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_review_authenticates_xds_and_ca_callers() {
    let kube = kube_setup(&["--authenticate", "kubernetes"]).await;
    let c = &kube.control;
    let id = |sa: &str| format!("spiffe://cluster.local/ns/default/sa/{sa}");
    use tonic::Code;
    let code = |r: Result<Vec<String>, tonic::Status>| r.map(|_| ()).map_err(|s| s.code());
    // A pod's own identity, and nothing else.
    let chain = certificate(c, Some(POD_A), &id("a")).await.unwrap();
    assert_eq!(chain.len(), 2);
    let denied = certificate(c, Some(POD_A), &id("b")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("sa/b"),
        "names the requested identity: {denied:?}"
    );
    assert_eq!(
        code(certificate(c, None, &id("a")).await),
        Err(Code::Unauthenticated)
    );
    assert_eq!(
        code(certificate(c, Some("forged"), &id("a")).await),
        Err(Code::Unauthenticated)
    );
    // The node agent of node-1: pods on node-1 only.
    assert_eq!(
        code(certificate(c, Some(AGENT_NODE_1), &id("a")).await),
        Ok(())
    );
    assert_eq!(
        code(certificate(c, Some(AGENT_NODE_1), &id("b")).await),
        Err(Code::PermissionDenied)
    );
    // An agent token bound to its pod only (no node-name extra): the node
    // comes from that pod in the source's state (node-2 here).
    kube.fake
        .apply(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "mesh-agent-n2", "namespace": "istio-system"},
            "spec": {"serviceAccountName": "mesh-agent", "nodeName": "node-2", "hostNetwork": true},
            "status": {"podIP": "10.0.0.2"}}))
        .unwrap();
    kube.fake.add_token(
        "token-agent-pod",
        "system:serviceaccount:istio-system:mesh-agent",
        &[("authentication.kubernetes.io/pod-name", "mesh-agent-n2")],
    );
    // Until the source has the agent's pod.
    let what = "the pod-bound agent token getting node-2's identity b";
    let got = try_eventually_async(what, CONVERGE, || async {
        code(certificate(c, Some("token-agent-pod"), &id("b")).await)
    })
    .await;
    got.unwrap_or_else(|e| panic!("{e}\n{}", c.warnings()));
    assert_eq!(
        code(certificate(c, Some("token-agent-pod"), &id("a")).await),
        Err(Code::PermissionDenied)
    );
    // Reviews are cached per token: asking again costs no TokenReview.
    let reviews =
        |kube: &KubeSetup| kube.fake.requests()["POST /apis/authentication.k8s.io/v1/tokenreviews"];
    let before = reviews(&kube);
    certificate(c, Some(POD_A), &id("a")).await.unwrap();
    assert_eq!(reviews(&kube), before, "cached");
    // xDS: no token or an unknown one is refused; the agent's is served.
    for node in [
        AsNode::agent("node-1"),
        AsNode::agent("node-1").with_token("forged"),
    ] {
        match fetch(&c.endpoint(), &node, &[ADDRESS_TYPE_URL], FETCH).await {
            Err(FetchError::Status(s)) => assert_eq!(s.code(), Code::Unauthenticated, "{s:?}"),
            other => panic!("expected UNAUTHENTICATED, got {other:?}"),
        }
    }
    let served = fetch(&c.endpoint(), &agent(), &[ADDRESS_TYPE_URL], FETCH)
        .await
        .unwrap();
    assert!(!served[ADDRESS_TYPE_URL].is_empty());
    // A waypoint's listener goes to its own service account only: a pod's
    // token declaring that waypoint gets none.
    let own = fetch(&c.endpoint(), &waypoint(), &[LISTENER_TYPE_URL], FETCH)
        .await
        .unwrap();
    assert!(
        !own[LISTENER_TYPE_URL].is_empty(),
        "no listener for the waypoint"
    );
    let posing = AsNode::waypoint("default", "waypoint").with_token(POD_A);
    let got = fetch(&c.endpoint(), &posing, &[LISTENER_TYPE_URL], FETCH)
        .await
        .unwrap();
    assert!(
        got[LISTENER_TYPE_URL].is_empty(),
        "another account got {:?}",
        got[LISTENER_TYPE_URL].keys()
    );
    // Each distinct token was reviewed by the fake's TokenReview.
    assert!(kube.fake.requests()["POST /apis/authentication.k8s.io/v1/tokenreviews"] >= 3);
}
