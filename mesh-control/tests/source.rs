//! The directory source: a realistic directory, classification, port
//! mapping, and that every validation problem names file, resource, field.
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
};

use mesh_control::{
    model::MtlsMode,
    source::{load_directory, load_files, LoadError, SourceConfig},
};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mesh")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn realistic_directory() {
    let snapshot = load_directory(&fixture(), &SourceConfig::default()).unwrap();
    let state = &snapshot.state;
    assert_eq!(state.trust_domain, "cluster.local");

    // Nodes: the first InternalIP.
    assert_eq!(state.nodes.len(), 2);
    assert_eq!(state.nodes["node-1"].address, ip("10.0.0.1"));
    assert_eq!(state.nodes["node-2"].address, ip("10.0.0.2"));

    // Pods are workloads (with or without an address yet); mesh iff
    // ambient namespace and not opted out.
    let mesh: BTreeMap<&str, bool> = state
        .workloads
        .values()
        .map(|w| (w.name.as_str(), w.mesh))
        .collect();
    assert_eq!(
        mesh,
        BTreeMap::from([
            ("details-v1", true),
            ("productpage-v1", true),
            ("reviews-v1", true),
            ("reviews-v2", true),
            ("ratings-v1", false),
            ("sleep", false),
        ])
    );
    let productpage = &state.workloads["Kubernetes//Pod/default/productpage-v1"];
    assert_eq!(productpage.uid, "Kubernetes//Pod/default/productpage-v1");
    assert_eq!(productpage.service_account, "bookinfo-productpage");
    assert_eq!(productpage.node, "node-1");
    assert_eq!(productpage.ips, [ip("10.244.1.10")]);
    assert_eq!(productpage.labels["version"], "v1");
    let reviews_v2 = &state.workloads["Kubernetes//Pod/default/reviews-v2"];
    assert_eq!(reviews_v2.ips, [ip("10.244.2.11"), ip("fd00:244:2::11")]);
    let ratings = &state.workloads["Kubernetes//Pod/default/ratings-v1"];
    assert_eq!(ratings.service_account, "default");

    // Services: key <ns>/<hostname>, TCP ports only, targetPort defaults to port.
    let keys: Vec<&str> = state.services.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "default/external-db.default.svc.cluster.local",
            "default/productpage.default.svc.cluster.local",
            "default/ratings.default.svc.cluster.local",
            "default/reviews.default.svc.cluster.local",
            "legacy/sleep.legacy.svc.cluster.local",
        ]
    );
    let reviews = &state.services["default/reviews.default.svc.cluster.local"];
    assert_eq!(reviews.hostname, "reviews.default.svc.cluster.local");
    assert_eq!(reviews.vips, [ip("10.96.0.11"), ip("fd00:96::11")]);
    assert_eq!(reviews.ports, BTreeMap::from([(9080, 9081)]));
    assert!(
        state.services["default/external-db.default.svc.cluster.local"]
            .vips
            .is_empty()
    );
    assert_eq!(
        state.services["default/productpage.default.svc.cluster.local"].ports,
        BTreeMap::from([(9080, 9080)])
    );

    // Service → workload port mapping.
    for name in ["reviews-v1", "reviews-v2"] {
        let w = &state.workloads[&format!("Kubernetes//Pod/default/{name}")];
        assert_eq!(
            w.services,
            BTreeMap::from([(
                "default/reviews.default.svc.cluster.local".to_string(),
                BTreeMap::from([(9080, 9081)])
            )]),
            "{name}"
        );
    }
    let sleep = &state.workloads["Kubernetes//Pod/legacy/sleep"];
    assert_eq!(
        sleep.services,
        BTreeMap::from([(
            "legacy/sleep.legacy.svc.cluster.local".to_string(),
            BTreeMap::from([(80, 8080)])
        )])
    );
    assert_eq!(
        ratings.services.len(),
        1,
        "opted-out pods are still service endpoints"
    );

    // PeerAuthentications: resolved scope and mode (UNSET inherits mesh-wide STRICT).
    let pas: Vec<(&str, &str, bool, MtlsMode)> = state
        .peer_authentications
        .iter()
        .map(|p| {
            (
                p.namespace.as_str(),
                p.name.as_str(),
                p.selector.is_empty(),
                p.mode,
            )
        })
        .collect();
    assert_eq!(
        pas,
        [
            ("istio-system", "default", true, MtlsMode::Strict),
            ("legacy", "legacy-permissive", true, MtlsMode::Permissive),
            ("default", "ratings-inherit", false, MtlsMode::Strict),
        ]
    );

    // Other Istio kinds kept raw, untouched.
    let raw: Vec<(&str, &str, &str, &str)> = snapshot
        .raw
        .iter()
        .map(|r| {
            (
                r.kind.as_str(),
                r.namespace.as_str(),
                r.name.as_str(),
                r.file.as_str(),
            )
        })
        .collect();
    assert_eq!(
        raw,
        [
            (
                "DestinationRule",
                "default",
                "my-destination-rule",
                "50-istio.yaml"
            ),
            ("VirtualService", "default", "reviews", "50-istio.yaml"),
            (
                "AuthorizationPolicy",
                "default",
                "productpage-viewer",
                "50-istio.yaml"
            ),
            ("Gateway", "default", "waypoint", "50-istio.yaml"),
        ]
    );
    assert_eq!(snapshot.raw[0].api_version, "networking.istio.io/v1alpha3");
    assert_eq!(snapshot.raw[3].api_version, "gateway.networking.k8s.io/v1");
    let v2_lb =
        &snapshot.raw[0].value["spec"]["subsets"][1]["trafficPolicy"]["loadBalancer"]["simple"];
    assert_eq!(
        v2_lb.as_str(),
        Some("ROUND_ROBIN // v2 subset 경우 round robin")
    );
    assert_eq!(
        snapshot.raw[1].value["spec"]["http"][0]["route"][1]["weight"].as_u64(),
        Some(80)
    );

    // The typed copy reads the `// comment` off, with a warning.
    let dr = &snapshot.state.destination_rules[0];
    let v2_policy = dr.subsets[1].traffic_policy.as_ref().unwrap();
    assert_eq!(
        v2_policy.settings.load_balancer.as_ref().unwrap().simple,
        Some(mesh_control::model::routing::SimpleLb::RoundRobin)
    );

    // Tolerated: the Deployment, the five `// comments` of the
    // DestinationRule; the hidden file and notes.txt are not read at all.
    assert_eq!(snapshot.warnings.len(), 6, "{:#?}", snapshot.warnings);
    assert!(snapshot.warnings[0..5].iter().all(|w| w
        .starts_with("50-istio.yaml: DestinationRule default/my-destination-rule: spec.")
        && w.contains("does not start a comment")));
    // The pod without an address is a workload with no addresses (the
    // agent decides its enrolment before the CNI gives it one).
    let details = &snapshot.state.workloads["Kubernetes//Pod/default/details-v1"];
    assert!(details.ips.is_empty() && details.mesh, "{details:?}");
    assert_eq!(
        snapshot.warnings[5],
        "60-ignored.yml: document 1: apps/v1 Deployment hello-nginx is not a kind the mesh reads; skipped"
    );
}

#[test]
fn root_namespace_and_trust_domain_are_configurable() {
    let config = SourceConfig {
        trust_domain: "example.org".into(),
        root_namespace: "mesh-root".into(),
        cluster_domain: "corp.local".into(),
    };
    let snapshot = load_directory(&fixture(), &config).unwrap();
    assert_eq!(snapshot.state.trust_domain, "example.org");
    assert!(snapshot
        .state
        .services
        .contains_key("default/reviews.default.svc.corp.local"));
    // istio-system is no longer the root: its policy is namespace-wide, and
    // the UNSET one inherits the (absent) mesh-wide mode, PERMISSIVE.
    let inherit = snapshot
        .state
        .peer_authentications
        .iter()
        .find(|p| p.name == "ratings-inherit")
        .unwrap();
    assert_eq!(inherit.mode, MtlsMode::Permissive);
}

#[test]
fn missing_directory_is_a_clear_error() {
    let err = load_directory(
        Path::new("/nonexistent/mesh-config"),
        &SourceConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Directory { .. }));
    assert_eq!(
        err.to_string(),
        "configuration directory /nonexistent/mesh-config: does not exist"
    );
}

/// Loads one file `f.yaml` after a valid base (namespace `default`
/// ambient, node `node-1`) and returns the problems, one string each.
fn problems(file: &str, yaml: &str) -> Vec<String> {
    let base = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels: {istio.io/dataplane-mode: ambient}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n";
    let files = [
        ("00-base.yaml".to_string(), base.to_string()),
        (file.to_string(), yaml.to_string()),
    ];
    match load_files(&files, &SourceConfig::default()) {
        Ok(_) => vec![],
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: productpage-v1\nspec:\n  nodeName: node-1\nstatus:\n  podIP: 10.244.0.5\n";

#[test]
fn each_problem_names_file_resource_and_field() {
    let cases: &[(&str, String, &str)] = &[
        (
            "pods.yaml",
            POD.replace("10.244.0.5", "10.0.0.x"),
            r#"pods.yaml: Pod default/productpage-v1: status.podIP: "10.0.0.x" is not an IP address"#,
        ),
        (
            "pods.yaml",
            format!("{POD}---\napiVersion: v1\nkind: Pod\nmetadata:\n  labels: {{app: x}}\n"),
            "pods.yaml: Pod in document 2: metadata.name: required field is missing",
        ),
        (
            "pods.yaml",
            format!("{POD}---\n{}", POD.replace("10.244.0.5", "10.244.0.6")),
            "pods.yaml: Pod default/productpage-v1: metadata.name: duplicate: also defined in pods.yaml, document 1",
        ),
        (
            "pods.yaml",
            POD.replace("node-1", "node-9"),
            r#"pods.yaml: Pod default/productpage-v1: spec.nodeName: node "node-9" is not defined by any Node in the directory"#,
        ),
        (
            "pods.yaml",
            POD.replace("  nodeName: node-1\n", "  serviceAccountName: sa\n"),
            "pods.yaml: Pod default/productpage-v1: spec.nodeName: required for a mesh workload",
        ),
        (
            "pods.yaml",
            POD.replace("spec:", "  labels:\n    version: 1.0\nspec:"),
            r#"pods.yaml: Pod default/productpage-v1: metadata.labels.version: expected a string, found a number (1.0); quote it: "1.0""#,
        ),
        (
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 70000\n".into(),
            "svc.yaml: Service default/s: spec.ports[0].port: 70000 is not a port number (1-65535)",
        ),
        (
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n  - targetPort: 8080\n".into(),
            "svc.yaml: Service default/s: spec.ports[1].port: required field is missing",
        ),
        (
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n    targetPort: http\n".into(),
            r#"svc.yaml: Service default/s: spec.ports[0].targetPort: named target port "http" is not supported yet; use the container port number"#,
        ),
        (
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n    protocol: QUIC\n".into(),
            r#"svc.yaml: Service default/s: spec.ports[0].protocol: "QUIC" is not TCP, UDP or SCTP"#,
        ),
        (
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: prod}\nspec:\n  clusterIP: 10.96.0.300\n".into(),
            r#"svc.yaml: Service prod/s: spec.clusterIP: "10.96.0.300" is not an IP address"#,
        ),
        (
            "nodes.yaml",
            "apiVersion: v1\nkind: Node\nmetadata: {name: node-2}\nstatus:\n  addresses:\n  - {type: Hostname, address: node-2}\n".into(),
            "nodes.yaml: Node node-2: status.addresses: no InternalIP address",
        ),
        (
            "nodes.yaml",
            "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.9}]}\n".into(),
            "nodes.yaml: Node node-1: metadata.name: duplicate: also defined in 00-base.yaml, document 2",
        ),
        (
            "pa.yaml",
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec:\n  mtls:\n    mode: STRICTER\n".into(),
            r#"pa.yaml: PeerAuthentication istio-system/default: spec.mtls.mode: "STRICTER" is not an mTLS mode (STRICT, PERMISSIVE, DISABLE or UNSET)"#,
        ),
        (
            "pa.yaml",
            "apiVersion: security.istio.io/v2\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {}\n".into(),
            "pa.yaml: PeerAuthentication default/default: apiVersion: security.istio.io/v2 is not a PeerAuthentication version",
        ),
        (
            "vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: Reviews}\nspec: {hosts: [reviews]}\n".into(),
            r#"vs.yaml: VirtualService default/Reviews: metadata.name: "Reviews" is not a valid name"#,
        ),
        (
            "vs.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {}\n---\napiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: r}\nspec: {}\n".into(),
            "vs.yaml: VirtualService default/r: metadata.name: duplicate: also defined in vs.yaml, document 1",
        ),
        (
            "bad.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n".into(),
            "bad.yaml: document 1: invalid YAML: ",
        ),
        (
            "bad.yaml",
            "http:\n- match:\n  - uri: {prefix: /}\n".into(),
            "bad.yaml: document 1: apiVersion: required field is missing",
        ),
        (
            "bad.yaml",
            "- just\n- a list\n".into(),
            "bad.yaml: document 1: expected a Kubernetes object (a mapping with apiVersion and kind), found a list",
        ),
    ];
    for (file, yaml, expected) in cases {
        let problems = problems(file, yaml);
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "expected a problem starting with\n  {expected}\ngot\n  {problems:#?}\nfor\n{yaml}"
        );
    }
}

#[test]
fn every_problem_of_a_load_is_reported() {
    let files = [
        ("a.yaml".to_string(), POD.replace("10.244.0.5", "bad-ip")),
        (
            "b.yaml".to_string(),
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 0}, {port: 80, targetPort: 99999}]\n".into(),
        ),
    ];
    let problems: Vec<String> = load_files(&files, &SourceConfig::default())
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        problems,
        [
            r#"a.yaml: Pod default/productpage-v1: status.podIP: "bad-ip" is not an IP address"#,
            "b.yaml: Service default/s: spec.ports[0].port: 0 is not a port number (1-65535)",
            "b.yaml: Service default/s: spec.ports[1].targetPort: 99999 is not a port number (1-65535)",
        ]
    );
}

#[test]
fn directory_with_an_error_is_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(
        dir.path().join("99-bad.yaml"),
        POD.replace("10.244.0.5", "10.0.0.x"),
    )
    .unwrap();
    let err = load_directory(dir.path(), &SourceConfig::default()).unwrap_err();
    let LoadError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(problems.len(), 1, "{err}");
    let text = err.to_string();
    assert!(text.starts_with("configuration in "), "{text}");
    assert!(
        text.contains(
            "rejected (1 problem):\n  99-bad.yaml: Pod default/productpage-v1: status.podIP"
        ),
        "{text}"
    );
}
