//! The Kubernetes manifests in `deploy/`, as a cluster would receive them:
//! every kustomization is rendered with `kubectl kustomize`, validated
//! strictly (unknown fields are errors) against the Kubernetes 1.33 and
//! 1.37 schemas with `kubernetes-validate`, and its security-relevant
//! fields are asserted: the agent's exact capability set, no privileged
//! container, API tokens only where the API is used, the projected
//! istio-ca token, host mounts, RBAC rule by rule, probes, PDB selectors,
//! the waypoint template's naming.
//!
//! Skips (printing why) only when `kubectl` is missing; a missing
//! validator is a failure (`cargo xtask setup` installs it).
mod deploy;

use std::{collections::BTreeSet, path::PathBuf};

use deploy::{checks::*, rbac::*, *};
use serde_json::Value;

/// The kustomizations users apply, relative to `deploy/`.
const MESH_OVERLAYS: [&str; 3] = ["overlays/kind", "overlays/k3s", "overlays/production"];
/// Custom resources without a bundled schema that may appear.
const CUSTOM_KINDS: [&str; 1] = ["Gateway gateway.networking.k8s.io/v1"];
/// Kubernetes versions checked: the oldest the kube client supports
/// (k8s-openapi `v1_33`) and the newest the validator knows.
const K8S_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

#[test]
fn every_kustomization_renders_and_validates_strictly() {
    let Some(kubectl) = kubectl_or_skip("every_kustomization_renders_and_validates_strictly")
    else {
        return;
    };
    let validator = mesh_e2e::kubeval::kubeval_bin().unwrap_or_else(|why| panic!("{why}"));
    let dirs = kustomizations();
    let rel: BTreeSet<String> = dirs
        .iter()
        .map(|d| d.strip_prefix(deploy_dir()).unwrap().display().to_string())
        .collect();
    for must in MESH_OVERLAYS.iter().chain(&[
        "waypoint",
        "cleanup/standard",
        "cleanup/k3s",
        "examples/bookinfo-waypoint",
    ]) {
        assert!(
            rel.contains(*must),
            "deploy/{must} is missing (found {rel:?})"
        );
    }
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("deploy-manifests");
    std::fs::create_dir_all(&out_dir).unwrap();
    for dir in &dirs {
        let name = dir
            .strip_prefix(deploy_dir())
            .unwrap()
            .display()
            .to_string()
            .replace('/', "_");
        let text = render_text(&kubectl, dir);
        assert!(
            !parse(&text).is_empty(),
            "{} renders nothing",
            dir.display()
        );
        let file = out_dir.join(format!("{name}.yaml"));
        std::fs::write(&file, &text).unwrap();
        for version in K8S_VERSIONS {
            let unchecked = validate(&validator, &file, version);
            for kind in &unchecked {
                assert!(
                    CUSTOM_KINDS.contains(&kind.as_str()),
                    "{}: no schema for {kind}: not a known custom resource",
                    dir.display()
                );
            }
        }
    }
}

#[test]
fn node_agent_has_exactly_the_capabilities_it_needs() {
    let Some(kubectl) = kubectl_or_skip("node_agent_has_exactly_the_capabilities_it_needs") else {
        return;
    };
    for overlay in MESH_OVERLAYS {
        let objs = render(&kubectl, overlay);
        let ds = one(&objs, "DaemonSet", "mesh-agent");
        let pod = pod_spec(ds);
        assert_eq!(pod["hostNetwork"], true, "{overlay}: hostNetwork");
        assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet", "{overlay}");
        assert_eq!(pod["hostPID"], Value::Null, "{overlay}: no hostPID");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for c in all_containers(pod) {
            let name = str_of(&c["name"], "container name");
            let sc = &c["securityContext"];
            assert_eq!(sc["privileged"], false, "{overlay}/{name}: privileged");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay}/{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay}/{name}");
            assert_eq!(
                strings(&sc["capabilities"]["drop"]),
                ["ALL"],
                "{overlay}/{name}"
            );
            let added: BTreeSet<String> = strings(&sc["capabilities"]["add"]).into_iter().collect();
            let want: BTreeSet<String> = if name == "mesh-agent" {
                ["NET_ADMIN", "SYS_ADMIN"].map(String::from).into()
            } else {
                BTreeSet::new()
            };
            assert_eq!(added, want, "{overlay}/{name}: added capabilities");
        }
        let agent = container(pod, "mesh-agent");
        assert_eq!(strings(&agent["command"]), ["mesh-agent"]);
        assert_eq!(agent["args"][0], "run", "{overlay}");
        let strategy = &ds["spec"]["updateStrategy"];
        assert_eq!(strategy["type"], "RollingUpdate");
        assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 1, "{overlay}");
        assert_eq!(strategy["rollingUpdate"]["maxSurge"], 0, "{overlay}");
        // The grace period must cover the drain.
        let drain = env(agent, "MESH_AGENT_DRAIN_TIMEOUT").expect("drain timeout set");
        let drain: u64 = drain.trim_end_matches('s').parse().expect("seconds");
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(grace > drain, "{overlay}: grace {grace}s <= drain {drain}s");
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(agent[probe]["httpGet"]["port"], 15021, "{overlay}: {probe}");
            assert_eq!(agent[probe]["httpGet"]["path"], "/healthz/ready");
        }
        assert!(agent["resources"]["requests"]["memory"].is_string());
        assert!(agent["resources"]["limits"]["memory"].is_string());
    }
}

#[test]
fn node_agent_mounts_and_credentials() {
    let Some(kubectl) = kubectl_or_skip("node_agent_mounts_and_credentials") else {
        return;
    };
    for overlay in MESH_OVERLAYS {
        let objs = render(&kubectl, overlay);
        let sa = one(&objs, "ServiceAccount", "mesh-agent");
        assert_eq!(sa["automountServiceAccountToken"], false, "{overlay}");
        let ds = one(&objs, "DaemonSet", "mesh-agent");
        let pod = pod_spec(ds);
        assert_eq!(pod["serviceAccountName"], "mesh-agent");
        assert_eq!(pod["automountServiceAccountToken"], false, "{overlay}");
        let (cni_bin, cni_conf) = if overlay.ends_with("k3s") {
            (
                "/var/lib/rancher/k3s/data/current/bin",
                "/var/lib/rancher/k3s/agent/etc/cni/net.d",
            )
        } else {
            ("/opt/cni/bin", "/etc/cni/net.d")
        };
        // Exactly these host paths, nothing broader (no /, no runtime socket).
        let host_paths: BTreeSet<&str> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["hostPath"]["path"].as_str())
            .collect();
        let want: BTreeSet<&str> = [
            "/sys/fs/bpf",
            "/sys/fs/cgroup",
            "/proc",
            "/var/run/netns",
            "/var/run/mesh",
            cni_bin,
            cni_conf,
        ]
        .into();
        assert_eq!(host_paths, want, "{overlay}: hostPath volumes");
        let agent = container(pod, "mesh-agent");
        let m =
            |vol: &str| mount(agent, vol).unwrap_or_else(|| panic!("{overlay}: no mount {vol}"));
        assert_eq!(host_path(pod, "bpffs"), Some("/sys/fs/bpf"));
        assert_eq!(m("bpffs")["mountPath"], "/sys/fs/bpf");
        assert_eq!(m("bpffs")["readOnly"], Value::Null, "pins are written");
        assert_eq!(host_path(pod, "cgroup"), Some("/sys/fs/cgroup"));
        assert_eq!(m("cgroup")["readOnly"], true);
        assert_eq!(
            env(agent, "MESH_AGENT_CGROUP_ROOT"),
            m("cgroup")["mountPath"].as_str()
        );
        assert_eq!(host_path(pod, "host-proc"), Some("/proc"));
        assert_eq!(
            m("host-proc")["readOnly"],
            true,
            "{overlay}: host /proc read only"
        );
        assert_eq!(host_path(pod, "netns"), Some("/var/run/netns"));
        assert_eq!(m("netns")["readOnly"], true);
        assert_eq!(m("netns")["mountPropagation"], "HostToContainer");
        assert_eq!(m("mesh-run")["mountPath"], "/var/run/mesh");
        assert_eq!(
            env(agent, "MESH_AGENT_CNI_SOCKET"),
            Some("/var/run/mesh/cni.sock")
        );
        // The CNI directories are the installer's only.
        assert!(mount(agent, "cni-bin").is_none() && mount(agent, "cni-conf").is_none());
        assert_eq!(host_path(pod, "cni-bin"), Some(cni_bin), "{overlay}");
        assert_eq!(host_path(pod, "cni-conf"), Some(cni_conf), "{overlay}");
        let install = container(pod, "install-cni");
        let args = strings(&install["command"]);
        assert_eq!(args[..2], ["mesh-cni", "install"]);
        let arg = |flag: &str| {
            let i = args
                .iter()
                .position(|a| a == flag)
                .unwrap_or_else(|| panic!("{flag}"));
            args[i + 1].clone()
        };
        assert_eq!(arg("--socket"), "/var/run/mesh/cni.sock");
        assert_eq!(
            mount(install, "cni-bin").unwrap()["mountPath"].as_str(),
            Some(arg("--cni-bin-dir").as_str())
        );
        assert_eq!(
            mount(install, "cni-conf").unwrap()["mountPath"].as_str(),
            Some(arg("--cni-conf-dir").as_str())
        );
        assert_projected_token(pod, agent, "MESH_AGENT_TOKEN_FILE", overlay);
        assert_eq!(
            env(agent, "MESH_AGENT_XDS_ADDR"),
            Some("https://mesh-control.istio-system.svc:15012"),
            "{overlay}: TLS to the control plane"
        );
    }
}

#[test]
fn control_plane_is_restricted_probed_and_served() {
    let Some(kubectl) = kubectl_or_skip("control_plane_is_restricted_probed_and_served") else {
        return;
    };
    for overlay in MESH_OVERLAYS {
        let objs = render(&kubectl, overlay);
        let deploy = one(&objs, "Deployment", "mesh-control");
        let pod = pod_spec(deploy);
        assert_restricted(pod, overlay);
        let replicas = if overlay.ends_with("production") {
            2
        } else {
            1
        };
        assert_eq!(deploy["spec"]["replicas"], replicas, "{overlay}");
        let c = container(pod, "mesh-control");
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], 15021, "{overlay}: {probe}");
            assert_eq!(c[probe]["httpGet"]["path"], "/healthz/ready");
        }
        let args = strings(&c["args"]);
        for pair in [
            ["--source", "kubernetes"],
            ["--authenticate", "kubernetes"],
            ["--token-audience", "istio-ca"],
        ] {
            assert!(
                args.windows(2).any(|w| w == pair),
                "{overlay}: {pair:?} in {args:?}"
            );
        }
        let admin = env(c, "MESH_CONTROL_ADMIN_ADDR").expect("admin addr");
        assert!(
            admin.starts_with("127.0.0.1:"),
            "{overlay}: admin {admin} off loopback"
        );
        // The CA key: from the mesh-ca Secret, readable by the pod's group only.
        let secret = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| v.get("secret"))
            .expect("CA secret volume");
        assert_eq!(secret["secretName"], "mesh-ca");
        assert_eq!(secret["defaultMode"], 0o440);
        let svc = one(&objs, "Service", "mesh-control");
        assert!(selects(
            &svc["spec"]["selector"],
            &deploy["spec"]["template"]["metadata"]["labels"]
        ));
        let ports: BTreeSet<u64> = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        let want: BTreeSet<u64> = if overlay.ends_with("production") {
            [15012].into()
        } else {
            [15010, 15012].into()
        };
        assert_eq!(ports, want, "{overlay}: Service ports");
        if overlay.ends_with("production") {
            let xds = env(c, "MESH_CONTROL_XDS_ADDR").unwrap();
            assert!(
                xds.starts_with("127.0.0.1:"),
                "production plaintext xDS on {xds}"
            );
        }
        let sa = one(&objs, "ServiceAccount", "mesh-control");
        assert_eq!(sa["automountServiceAccountToken"], true);
        for o in &objs {
            if o["metadata"].get("namespace").is_some() {
                assert_eq!(o["metadata"]["namespace"], "istio-system", "{overlay}: {o}");
            }
        }
        let ns = one(&objs, "Namespace", "istio-system");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
    }
}

#[test]
fn rbac_is_exactly_the_justified_rules() {
    let Some(kubectl) = kubectl_or_skip("rbac_is_exactly_the_justified_rules") else {
        return;
    };
    for rel in
        MESH_OVERLAYS
            .iter()
            .chain(&["waypoint", "cleanup/standard", "examples/bookinfo-waypoint"])
    {
        let objs = render(&kubectl, rel);
        let triples = rbac_triples(&objs);
        for (g, r, v) in &triples {
            assert!(g != "*" && r != "*" && v != "*", "{rel}: wildcard rule");
            assert!(
                !r.starts_with("secrets") && !r.starts_with("configmaps"),
                "{rel}: {r}"
            );
            let write = !matches!(v.as_str(), "get" | "list" | "watch");
            let allowed = (r.ends_with("/status") && v == "patch")
                || (r == "events" && g.is_empty() && v == "create")
                || (r == "tokenreviews" && v == "create");
            assert!(!write || allowed, "{rel}: write {v} on {g}/{r}");
        }
        let bindings: Vec<&Value> = objs
            .iter()
            .filter(|o| o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
            .collect();
        if MESH_OVERLAYS.contains(rel) {
            assert_eq!(triples, expected_rbac(), "{rel}: ClusterRole rules");
            assert_eq!(bindings.len(), 1, "{rel}: one binding");
            let b = bindings[0];
            assert_eq!(b["roleRef"]["name"], "mesh-control");
            let subjects = b["subjects"].as_array().unwrap();
            assert_eq!(subjects.len(), 1);
            assert_eq!(subjects[0]["kind"], "ServiceAccount");
            assert_eq!(subjects[0]["name"], "mesh-control");
            assert_eq!(subjects[0]["namespace"], "istio-system");
        } else {
            assert!(
                triples.is_empty() && bindings.is_empty(),
                "{rel}: no RBAC expected"
            );
        }
    }
}

#[test]
fn pdbs_select_their_pods() {
    let Some(kubectl) = kubectl_or_skip("pdbs_select_their_pods") else {
        return;
    };
    let cases: [(&str, &[&str]); 4] = [
        ("overlays/kind", &["mesh-control"]),
        ("overlays/production", &["mesh-control"]),
        ("waypoint", &["waypoint"]),
        ("examples/bookinfo-waypoint", &["waypoint"]),
    ];
    for (rel, pdb_names) in cases {
        let objs = render(&kubectl, rel);
        let pdbs = of_kind(&objs, "PodDisruptionBudget");
        let names: Vec<&str> = pdbs
            .iter()
            .map(|p| str_of(&p["metadata"]["name"], "name"))
            .collect();
        assert_eq!(names, pdb_names, "{rel}: PDBs");
        for pdb in pdbs {
            let selector = &pdb["spec"]["selector"]["matchLabels"];
            let matched: Vec<&str> = objs
                .iter()
                .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "DaemonSet")))
                .filter(|w| selects(selector, &w["spec"]["template"]["metadata"]["labels"]))
                .map(|w| str_of(&w["metadata"]["name"], "name"))
                .collect();
            assert_eq!(
                matched,
                [pdb["metadata"]["name"].as_str().unwrap()],
                "{rel}"
            );
            // Never blocks a drain of a single replica.
            assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{rel}");
        }
    }
}

#[test]
fn waypoint_template_is_consistent_and_renamable() {
    let Some(kubectl) = kubectl_or_skip("waypoint_template_is_consistent_and_renamable") else {
        return;
    };
    let cases = [
        (
            "examples/bookinfo-waypoint",
            render(&kubectl, "examples/bookinfo-waypoint"),
            "bookinfo",
            "waypoint",
        ),
        (
            "prefixed",
            render_waypoint_overlay(&kubectl, "shop", "reviews-"),
            "shop",
            "reviews-waypoint",
        ),
    ];
    for (ctx, objs, ns, name) in cases {
        for o in &objs {
            assert_eq!(o["metadata"]["namespace"], ns, "{ctx}: {o}");
            assert_eq!(
                o["metadata"]["name"], name,
                "{ctx}: every object named after the Gateway"
            );
        }
        let gw = one(&objs, "Gateway", name);
        assert_eq!(gw["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(gw["spec"]["gatewayClassName"], "istio-waypoint", "{ctx}");
        let l = &gw["spec"]["listeners"][0];
        assert_eq!(
            (l["port"].as_u64(), l["protocol"].as_str()),
            (Some(15008), Some("HBONE"))
        );
        let sa = one(&objs, "ServiceAccount", name);
        assert_eq!(sa["automountServiceAccountToken"], false, "{ctx}");
        let deploy = one(&objs, "Deployment", name);
        let pod = pod_spec(deploy);
        assert_restricted(pod, ctx);
        assert_eq!(
            pod["serviceAccountName"], name,
            "{ctx}: identity = Gateway name"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{ctx}");
        let labels = &deploy["spec"]["template"]["metadata"]["labels"];
        assert_eq!(
            labels["gateway.networking.k8s.io/gateway-name"], name,
            "{ctx}"
        );
        assert!(
            selects(&deploy["spec"]["selector"]["matchLabels"], labels),
            "{ctx}"
        );
        let svc = one(&objs, "Service", name);
        assert!(
            selects(&svc["spec"]["selector"], labels),
            "{ctx}: Service selects the pods"
        );
        assert_eq!(svc["spec"]["ports"][0]["port"], 15008);
        let pdb = one(&objs, "PodDisruptionBudget", name);
        assert!(
            selects(&pdb["spec"]["selector"]["matchLabels"], labels),
            "{ctx}: the PDB selects the waypoint's pods"
        );
        let c = container(pod, "waypoint");
        assert_projected_token(pod, c, "MESH_WAYPOINT_TOKEN_FILE", ctx);
        assert_eq!(
            env(c, "MESH_WAYPOINT_XDS_ADDR"),
            Some("https://mesh-control.istio-system.svc:15012")
        );
        let http = env(c, "MESH_WAYPOINT_HTTP_ADDR").unwrap();
        assert!(
            http.starts_with("127.0.0.1:"),
            "{ctx}: identity-less listener {http} exposed"
        );
        // The name the waypoint asks xDS for comes from the label above.
        let name_env = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "MESH_WAYPOINT_NAME")
            .unwrap();
        assert_eq!(
            name_env["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.labels['gateway.networking.k8s.io/gateway-name']"
        );
        // Admin (/quitquitquit, /logging, /config_dump) stays on loopback;
        // probes and scrapes use the read-only ports.
        if let Some(admin) = env(c, "MESH_WAYPOINT_ADMIN_ADDR") {
            assert!(
                admin.starts_with("127.0.0.1:"),
                "{ctx}: admin exposed on {admin}"
            );
        }
        let declared: Vec<&Value> = c["ports"]
            .as_array()
            .map(|p| p.iter().map(|p| &p["containerPort"]).collect())
            .unwrap_or_default();
        assert!(
            !declared.iter().any(|p| **p == 15000),
            "{ctx}: admin port declared"
        );
        for probe in ["readinessProbe", "startupProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], 15021, "{ctx}: {probe}");
            assert_eq!(c[probe]["httpGet"]["path"], "/healthz/ready", "{ctx}");
        }
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], 15021, "{ctx}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz/live");
        let annotations = &deploy["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/port"], "15020", "{ctx}");
        assert!(c["resources"]["limits"]["memory"].is_string());
    }
}

#[test]
fn crds_only_in_dev_overlays() {
    let Some(kubectl) = kubectl_or_skip("crds_only_in_dev_overlays") else {
        return;
    };
    let want: BTreeSet<&str> = [
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
        "serviceentries.networking.istio.io",
        "gateways.networking.istio.io",
        "authorizationpolicies.security.istio.io",
        "peerauthentications.security.istio.io",
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "referencegrants.gateway.networking.k8s.io",
    ]
    .into();
    for overlay in MESH_OVERLAYS {
        let objs = render(&kubectl, overlay);
        let crds = of_kind(&objs, "CustomResourceDefinition");
        let names: BTreeSet<&str> = crds
            .iter()
            .map(|c| str_of(&c["metadata"]["name"], "name"))
            .collect();
        if overlay.ends_with("production") {
            assert!(names.is_empty(), "production uses the upstream CRDs");
            continue;
        }
        assert_eq!(names, want, "{overlay}");
        for crd in crds {
            let name = crd["metadata"]["name"].as_str().unwrap();
            let versions = crd["spec"]["versions"].as_array().unwrap();
            let storage = versions.iter().filter(|v| v["storage"] == true).count();
            assert_eq!(storage, 1, "{name}: one storage version");
            // ReferenceGrant is v1beta1 upstream and has no status.
            let grant = name.starts_with("referencegrants.");
            let version = if grant { "v1beta1" } else { "v1" };
            assert!(
                versions
                    .iter()
                    .any(|v| v["name"] == version && v["served"] == true),
                "{name}"
            );
            for v in versions {
                // mesh-control patches .../status.
                assert!(
                    grant || v["subresources"]["status"].is_object(),
                    "{name}: status subresource"
                );
                assert_eq!(v["schema"]["openAPIV3Schema"]["type"], "object", "{name}");
            }
            if name.ends_with(".k8s.io") {
                let approval = &crd["metadata"]["annotations"]["api-approved.kubernetes.io"];
                assert!(
                    approval.is_string(),
                    "{name}: protected group needs the approval annotation"
                );
            }
        }
    }
}

#[test]
fn cleanup_undoes_what_the_agent_installs() {
    let Some(kubectl) = kubectl_or_skip("cleanup_undoes_what_the_agent_installs") else {
        return;
    };
    for (cleanup, overlay) in [
        ("cleanup/standard", "overlays/kind"),
        ("cleanup/k3s", "overlays/k3s"),
    ] {
        let objs = render(&kubectl, cleanup);
        let ds = one(&objs, "DaemonSet", "mesh-cleanup");
        assert_eq!(ds["metadata"]["namespace"], "istio-system");
        let pod = pod_spec(ds);
        assert_eq!(pod["automountServiceAccountToken"], false);
        // Must start while mesh-cni is still in the chain and no agent runs.
        assert_eq!(pod["hostNetwork"], true, "{cleanup}: outside the CNI chain");
        for c in all_containers(pod) {
            let sc = &c["securityContext"];
            assert_eq!(sc["privileged"], false, "{cleanup}");
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{cleanup}");
            assert!(
                sc["capabilities"].get("add").is_none(),
                "{cleanup}: no capability needed"
            );
        }
        let installed = render(&kubectl, overlay);
        let agent_pod = pod_spec(one(&installed, "DaemonSet", "mesh-agent"));
        for vol in ["cni-bin", "cni-conf", "bpffs"] {
            assert_eq!(
                host_path(pod, vol),
                host_path(agent_pod, vol),
                "{cleanup}: {vol}"
            );
        }
        let cni = container(pod, "uninstall-cni");
        assert_eq!(strings(&cni["command"])[..2], ["mesh-cni", "uninstall"]);
        let ebpf = container(pod, "uninstall-ebpf");
        assert_eq!(strings(&ebpf["command"]), ["mesh-agent", "uninstall"]);
        assert_eq!(mount(ebpf, "bpffs").unwrap()["mountPath"], "/sys/fs/bpf");
        let run = container(pod, "remove-run-dir");
        let removed = strings(&run["command"]).last().cloned().unwrap();
        let under = mount(run, "var-run").unwrap()["mountPath"]
            .as_str()
            .unwrap();
        assert_eq!(
            format!(
                "{}{}",
                host_path(pod, "var-run").unwrap(),
                removed.trim_start_matches(under)
            ),
            host_path(agent_pod, "mesh-run").unwrap(),
            "{cleanup}: removes the agent's run dir"
        );
    }
}

#[test]
fn images_are_the_one_mesh_image() {
    let Some(kubectl) = kubectl_or_skip("images_are_the_one_mesh_image") else {
        return;
    };
    for (rel, tag) in [
        ("overlays/kind", "dev"),
        ("overlays/k3s", "dev"),
        ("overlays/production", "0.1.0"),
        ("waypoint", "0.1.0"),
        ("cleanup/standard", "0.1.0"),
    ] {
        let objs = render(&kubectl, rel);
        for w in objs
            .iter()
            .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "DaemonSet")))
        {
            for c in all_containers(pod_spec(w)) {
                assert_eq!(c["image"], format!("ghcr.io/mesh-rs/mesh:{tag}"), "{rel}");
            }
        }
    }
}
