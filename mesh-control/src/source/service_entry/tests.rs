use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::{IpAddr, Ipv4Addr},
};

use super::vips::allocate;
use crate::{
    model::service_entry::{EndpointAddress, Location, Resolution},
    source::{load_files, test_yaml::AMBIENT_NODE, Snapshot, SourceConfig},
};

fn load(yaml: &str) -> Result<Snapshot, Vec<String>> {
    load_files(
        &[("se.yaml".to_string(), yaml.to_string())],
        &SourceConfig::default(),
    )
    .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

fn entry(spec: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: ext, namespace: shop}}\nspec:\n{spec}")
}

/// The problems of loading `spec`, which must fail.
fn rejected(spec: &str) -> Vec<String> {
    match load(&entry(spec)) {
        Ok(_) => panic!("accepted:\n{spec}"),
        Err(problems) => problems,
    }
}

fn assert_rejected(spec: &str, want: &str) {
    let problems = rejected(spec);
    let want = format!("se.yaml: ServiceEntry shop/ext: {want}");
    assert!(
        problems.iter().any(|p| p.starts_with(&want)),
        "want {want:?} in {problems:#?}"
    );
}

const SEED: &str = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: googleapis
spec:
  hosts: # comment
  - www.googleapis.com
  exportTo:
  \t- \".\" # a tab
  ports:
  - number: 80
    name: http
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
";

#[test]
fn the_seed_entry_parses_into_a_service_with_an_allocated_vip() {
    let snapshot = load(SEED).unwrap();
    let state = &snapshot.state;
    let entry = &state.service_entries[0];
    assert_eq!(entry.hosts, ["www.googleapis.com"]);
    assert_eq!(entry.export_to, ["."]);
    assert_eq!(entry.spec.resolution, Resolution::Dns);
    assert_eq!(entry.spec.location, Location::MeshExternal);
    let names: Vec<_> = entry.spec.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["http", "https"]);
    let svc = &state.services["default/www.googleapis.com"];
    assert_eq!(svc.name, "googleapis");
    assert_eq!(svc.hostname, "www.googleapis.com");
    assert_eq!(svc.ports, BTreeMap::from([(80, 80), (443, 443)]));
    assert_eq!(svc.port_protocols[&443], "HTTPS");
    assert_eq!(svc.vips.len(), 1);
    let IpAddr::V4(vip) = svc.vips[0] else {
        panic!("{:?}", svc.vips)
    };
    assert_eq!(vip.octets()[..2], [240, 240]);
    let external = svc.external.as_ref().unwrap();
    assert!(external.allocated_vips);
    assert_eq!(external.entry, "default/googleapis");
    assert_eq!(external.port_names[&443], "https");
    // The same configuration gives the same VIP.
    assert_eq!(
        load(SEED).unwrap().state.services["default/www.googleapis.com"].vips,
        svc.vips
    );
}

#[test]
fn every_field_is_read() {
    let snapshot = load(&entry(
        "  hosts: [api.example.com, \"*.example.org\", api.example.com]
  addresses: [192.0.2.10, 192.0.2.11/32, 198.51.100.0/24]
  ports:
  - {number: 8443, name: https-api, protocol: tls, targetPort: 443}
  - {number: 5353, name: dns, protocol: UDP}
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: 203.0.113.5
    ports: {https-api: 9443}
    labels: {app: api, version: v2}
    weight: 3
    network: n1
  - {address: 203.0.113.6}
  subjectAltNames: [spiffe://example.org/api]
  exportTo: [\".\", web]
",
    ))
    .unwrap();
    let state = &snapshot.state;
    let e = &state.service_entries[0];
    assert_eq!(e.hosts, ["api.example.com", "*.example.org"]);
    assert_eq!(e.spec.addresses.len(), 3);
    assert_eq!(
        e.spec.vips(),
        [
            "192.0.2.10".parse::<IpAddr>().unwrap(),
            "192.0.2.11".parse().unwrap()
        ]
    );
    assert_eq!(e.spec.ranges().count(), 1);
    assert_eq!(e.spec.location, Location::MeshInternal);
    assert_eq!(e.spec.ports[0].target_port, Some(443));
    assert_eq!(
        e.spec.endpoints[0].address,
        EndpointAddress::Ip("203.0.113.5".parse().unwrap())
    );
    assert_eq!(e.spec.endpoints[0].ports["https-api"], 9443);
    assert_eq!(e.spec.endpoints[0].weight, 3);
    assert_eq!(e.spec.endpoints[0].labels["version"], "v2");
    assert_eq!(e.spec.subject_alt_names, ["spiffe://example.org/api"]);
    let svc = &state.services["shop/api.example.com"];
    // UDP is not carried; the written addresses are the VIPs.
    assert_eq!(svc.ports, BTreeMap::from([(8443, 443)]));
    assert_eq!(svc.vips, e.spec.vips());
    assert!(!svc.external.as_ref().unwrap().allocated_vips);
    let wildcard = &state.services["shop/*.example.org"];
    assert_eq!(wildcard.vips, e.spec.vips());
    let codes: Vec<_> = snapshot
        .findings
        .iter()
        .map(|f| (f.code, f.field.clone().unwrap()))
        .collect();
    assert!(
        codes.contains(&("MESH0115", "spec.addresses[2]".into())),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("MESH0115", "spec.ports[1].protocol".into())),
        "{codes:?}"
    );
}

#[test]
fn each_invalid_field_is_named() {
    for (spec, want) in [
        ("  ports: [{number: 80, name: http}]\n", "spec.hosts: at least one host is required"),
        ("  hosts: []\n", "spec.hosts: at least one host is required"),
        ("  hosts: [\"\"]\n", "spec.hosts[0]: must not be empty"),
        ("  hosts: [\"*\"]\n", "spec.hosts[0]: \"*\" is not a valid host"),
        ("  hosts: [\"a.*.com\"]\n", "spec.hosts[0]: \"a.*.com\" is not a DNS name"),
        ("  hosts: [a.com]\n  addresses: [10.0.0.300]\n", "spec.addresses[0]: \"10.0.0.300\" is not an IP address or CIDR"),
        ("  hosts: [a.com]\n  ports: [{number: 0, name: http}]\n", "spec.ports[0].number: 0 is not a port number"),
        ("  hosts: [a.com]\n  ports: [{number: 80}]\n", "spec.ports[0].name: required field is missing"),
        ("  hosts: [a.com]\n  ports: [{name: http}]\n", "spec.ports[0].number: required field is missing"),
        ("  hosts: [a.com]\n  ports: [{number: 80, name: a}, {number: 80, name: b}]\n", "spec.ports[1].number: port 80 is listed twice"),
        ("  hosts: [a.com]\n  ports: [{number: 80, name: a}, {number: 81, name: a}]\n", "spec.ports[1].name: port name \"a\" is listed twice"),
        ("  hosts: [a.com]\n  ports: [{number: 80, name: a, protocol: SMTP}]\n", "spec.ports[0].protocol: \"SMTP\" is not a protocol"),
        ("  hosts: [a.com]\n  ports: [{number: 80, name: a, targetPort: 70000}]\n", "spec.ports[0].targetPort: 70000 is not a port number"),
        ("  hosts: [a.com]\n  location: OUTSIDE\n", "spec.location: \"OUTSIDE\" is not one of MESH_EXTERNAL, MESH_INTERNAL"),
        ("  hosts: [a.com]\n  resolution: DYNAMIC\n", "spec.resolution: \"DYNAMIC\" is not one of"),
        ("  hosts: [a.com]\n  endpoints: [{address: 10.1.1.1}]\n", "spec.endpoints: resolution NONE takes no endpoints"),
        ("  hosts: [a.com]\n  resolution: STATIC\n", "spec.resolution: STATIC needs endpoints or a workloadSelector"),
        ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: db.example.com}]\n", "spec.endpoints[0].address: \"db.example.com\" is not an IP address (a DNS name is allowed only"),
        ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: \"unix:///var/run/x.sock\"}]\n", "spec.endpoints[0].address: \"unix:///var/run/x.sock\": Unix domain socket endpoints are not supported"),
        ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{ports: {http: 80}}]\n", "spec.endpoints[0].address: required field is missing"),
        ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: 10.1.1.1, ports: {web: 80}}]\n", "spec.endpoints[0].ports.web: \"web\" is not the name of one of spec.ports"),
        ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: 10.1.1.1}]\n  workloadSelector: {labels: {app: a}}\n", "spec.workloadSelector: only one of workloadSelector or endpoints is allowed"),
        ("  hosts: [\"*.a.com\"]\n  resolution: DNS\n", "spec.hosts[0]: \"*.a.com\": a wildcard host cannot be resolved"),
        ("  hosts: [a.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints: [{address: a.example}, {address: b.example}]\n", "spec.endpoints: resolution DNS_ROUND_ROBIN takes at most one endpoint"),
        ("  hosts: [a.com]\n  resolution: DNS\n  addresses: [10.0.0.0/8]\n", "spec.addresses[0]: 10.0.0.0/8: CIDR addresses are allowed only with resolution NONE or STATIC"),
        ("  hosts: [a.com]\n  resolution: STATIC\n  workloadSelector: {labels: {app: 1}}\n", "spec.workloadSelector.labels.app: expected a string"),
        ("  hosts: [a.com]\n  exportTo: [\"*\", web]\n", "spec.exportTo: \"*\" cannot be combined"),
    ] {
        assert_rejected(spec, want);
    }
}

#[test]
fn valid_combinations_are_accepted() {
    for spec in [
        "  hosts: [a.com]\n",
        "  hosts: [\"*.a.com\"]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n",
        "  hosts: [a.com]\n  resolution: DNS\n  endpoints: [{address: a.example}, {address: 10.1.1.1}]\n",
        "  hosts: [\"*.a.com\"]\n  resolution: DNS\n  endpoints: [{address: a.example}]\n",
        "  hosts: [a.com]\n  resolution: STATIC\n  workloadSelector: {labels: {app: a}}\n",
        "  hosts: [a.com]\n  addresses: [10.9.0.0/16]\n  resolution: STATIC\n  endpoints: [{address: 10.9.1.1}]\n",
    ] {
        load(&entry(spec)).unwrap_or_else(|p| panic!("{spec}: {p:#?}"));
    }
}

fn keys(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(ToString::to_string).collect()
}

#[test]
fn vips_are_stable_collision_free_and_kept_when_entries_are_added() {
    let few = keys(&["a/x.com", "a/y.com", "b/x.com"]);
    let first = allocate(&few, &HashSet::new());
    assert_eq!(first.len(), 3);
    assert_eq!(first, allocate(&few, &HashSet::new()), "deterministic");
    let many: BTreeSet<String> = (0..3000)
        .map(|i| format!("ns/host-{i}.example.com"))
        .collect();
    let all = allocate(&many.iter().chain(&few).cloned().collect(), &HashSet::new());
    let distinct: HashSet<_> = all.values().collect();
    assert_eq!(distinct.len(), all.len(), "no two keys share a VIP");
    for ip in all.values() {
        assert_eq!(ip.octets()[..2], [240, 240]);
        assert!(!matches!(ip.octets()[3], 0 | 255), "{ip}");
    }
    for (key, ip) in &first {
        assert_eq!(all[key], *ip, "{key} moved when 3000 entries were added");
    }
    // An address already in use is never handed out: its key probes on.
    let taken: HashSet<IpAddr> = [IpAddr::V4(first["a/x.com"])].into();
    let around = allocate(&few, &taken);
    assert_ne!(around["a/x.com"], first["a/x.com"]);
    assert_eq!(around["a/y.com"], first["a/y.com"]);
}

#[test]
fn colliding_homes_go_to_the_smallest_key_and_the_others_probe() {
    // Find two keys with the same home slot.
    let mut seen: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let (a, b) = (0..200_000)
        .find_map(|i| {
            let key = format!("ns/h{i}.example");
            let ip = allocate(&keys(&[&key]), &HashSet::new())[&key];
            seen.insert(ip, key.clone()).map(|other| (other, key))
        })
        .unwrap();
    let alone = allocate(&keys(&[&a]), &HashSet::new())[&a];
    let both = allocate(&keys(&[&a, &b]), &HashSet::new());
    let (small, large) = if a < b { (&a, &b) } else { (&b, &a) };
    assert_eq!(both[small], alone);
    assert_ne!(both[large], alone);
}

const PODS: &str = "---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec: {nodeName: node-1}
status: {podIP: 10.244.0.7}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1}
status: {podIP: 10.244.0.8}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.8, selector: {app: web}, ports: [{port: 80}]}
";

fn with_pods(spec: &str) -> Result<Snapshot, Vec<String>> {
    load(&format!("{AMBIENT_NODE}{PODS}---\n{}", entry(spec)))
}

#[test]
fn selected_pods_and_pod_addresses_list_the_entry_service() {
    let snapshot = with_pods(
        "  hosts: [db.internal, db2.internal]
  location: MESH_INTERNAL
  ports: [{number: 5432, name: pg, targetPort: 15432}]
  resolution: STATIC
  workloadSelector: {labels: {app: db}}
",
    )
    .unwrap();
    let db = &snapshot.state.workloads["Kubernetes//Pod/shop/db-0"];
    assert_eq!(
        db.services["shop/db.internal"],
        BTreeMap::from([(5432, 15432)])
    );
    assert_eq!(
        db.services["shop/db2.internal"],
        BTreeMap::from([(5432, 15432)])
    );
    let web = &snapshot.state.workloads["Kubernetes//Pod/shop/web-0"];
    assert!(!web.services.contains_key("shop/db.internal"));

    // An inline endpoint with a pod's address is that pod.
    let snapshot = with_pods(
        "  hosts: [web.internal]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.244.0.8, ports: {http: 8080}}, {address: 192.0.2.1}]
",
    )
    .unwrap();
    let web = &snapshot.state.workloads["Kubernetes//Pod/shop/web-0"];
    assert_eq!(
        web.services["shop/web.internal"],
        BTreeMap::from([(80, 8080)])
    );
    let external = snapshot.state.services["shop/web.internal"]
        .external
        .clone()
        .unwrap();
    assert_eq!(external.endpoints.len(), 2, "kept as written");
    // The workload xDS publishes the other endpoint only.
    let published: Vec<String> = crate::translate::workload::addresses(
        &snapshot.state,
        &crate::translate::workload::ConvertOptions::default(),
    )
    .into_iter()
    .map(|(name, _)| name)
    .filter(|name| name.contains("/ServiceEntry/"))
    .collect();
    assert_eq!(
        published,
        ["Kubernetes/networking.istio.io/ServiceEntry/shop/ext/192.0.2.1"]
    );
}

#[test]
fn a_kubernetes_service_keeps_its_host_and_the_first_entry_wins() {
    let yaml = format!(
        "{AMBIENT_NODE}{PODS}---\n{}---\n{}",
        entry("  hosts: [web.shop.svc.cluster.local, api.example.com]\n  resolution: DNS\n"),
        entry("  hosts: [api.example.com]\n  addresses: [192.0.2.50]\n")
            .replace("name: ext", "name: ext2"),
    );
    let snapshot = load(&yaml).unwrap();
    let state = &snapshot.state;
    let web = &state.services["shop/web.shop.svc.cluster.local"];
    assert!(web.external.is_none());
    assert_eq!(web.vips, ["10.96.0.8".parse::<IpAddr>().unwrap()]);
    let api = &state.services["shop/api.example.com"];
    assert_eq!(api.external.as_ref().unwrap().entry, "shop/ext");
    assert!(api.external.as_ref().unwrap().allocated_vips);
    let found: Vec<String> = snapshot.findings.iter().map(ToString::to_string).collect();
    assert!(
        found.iter().any(|f| f.starts_with("Warning [MESH0112] ServiceEntry shop/ext (se.yaml) spec.hosts[0]: web.shop.svc.cluster.local is the hostname of Kubernetes Service shop/web")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with("Warning [MESH0114] ServiceEntry shop/ext2 (se.yaml) spec.hosts[0]: api.example.com is also a host of ServiceEntry shop/ext (se.yaml), which comes first")),
        "{found:#?}"
    );
    assert!(
        snapshot.warnings.iter().any(|w| w.contains("MESH0114")),
        "logged too"
    );
}

#[test]
fn an_entry_address_may_not_be_a_pod_or_service_address() {
    for (address, want) in [
        (
            "10.244.0.7",
            "spec.addresses[0]: 10.244.0.7 is the address of pod Kubernetes//Pod/shop/db-0",
        ),
        (
            "10.96.0.8",
            "spec.addresses[0]: 10.96.0.8 is already a Kubernetes Service's VIP",
        ),
    ] {
        let problems =
            with_pods(&format!("  hosts: [a.com]\n  addresses: [{address}]\n")).unwrap_err();
        let want = format!("se.yaml: ServiceEntry shop/ext: {want}");
        assert!(
            problems.iter().any(|p| p.starts_with(&want)),
            "{problems:#?}"
        );
    }
}

#[test]
fn wildcards_and_none_get_no_vip_and_dns_wildcards_are_reported() {
    let snapshot = load(&entry(
        "  hosts: [\"*.a.com\", b.com]\n  resolution: DNS\n  endpoints: [{address: lb.a.com}]\n",
    ))
    .unwrap();
    assert!(snapshot.state.services["shop/*.a.com"].vips.is_empty());
    assert_eq!(snapshot.state.services["shop/b.com"].vips.len(), 1);
    assert!(snapshot.findings.iter().any(|f| f.code == "MESH0113"));
    let snapshot = load(&entry("  hosts: [b.com]\n")).unwrap();
    assert!(
        snapshot.state.services["shop/b.com"].vips.is_empty(),
        "resolution NONE"
    );
}
