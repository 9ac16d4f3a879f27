//! The generators: each family returns its cases; [`all`] is the corpus.
use std::fmt::Write as _;

use super::{Case, Expect};

fn rejected(
    name: impl Into<String>,
    content: impl Into<Vec<u8>>,
    resource: &str,
    field: &str,
) -> Case {
    Case {
        name: name.into(),
        content: content.into(),
        expect: Expect::Rejected {
            resource: resource.into(),
            field: field.into(),
        },
    }
}

/// Every case, in a stable order, names unique.
pub fn all() -> Vec<Case> {
    generate()
}

fn generate() -> Vec<Case> {
    let mut cases = vec![];
    cases.extend(yaml_bombs());
    cases.extend(deep_nesting());
    cases.extend(syntax());
    cases.extend(invalid_utf8());
    cases.extend(big());
    cases.extend(wrong_types());
    cases.extend(duplicates());
    cases.extend(kinds_and_names());
    cases.extend(regexes());
    cases
}

/// Anchors and aliases that expand exponentially ("billion laughs"): the
/// parser must refuse to expand them, not allocate.
fn yaml_bombs() -> Vec<Case> {
    let mut cases = vec![];
    for (levels, fanout) in [(9, 10), (12, 8), (30, 2), (64, 2)] {
        let mut s = String::from("a0: &a0 [\"lol\"]\n");
        for i in 1..=levels {
            let refs = vec![format!("*a{}", i - 1); fanout].join(", ");
            writeln!(s, "a{i}: &a{i} [{refs}]").unwrap();
        }
        cases.push(rejected(
            format!("laughs-list-{levels}x{fanout}"),
            s,
            "document 1",
            "",
        ));
    }
    // The same bomb inside a resource's labels and spec.
    let mut s = String::from("apiVersion: v1\nkind: Service\nmetadata:\n  name: bomb\n  namespace: shop\n  annotations:\n    a0: &a0 \"lol lol lol lol lol lol lol lol\"\n");
    for i in 1..=10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        writeln!(s, "    a{i}: &a{i} [{refs}]").unwrap();
    }
    s.push_str("spec: {ports: [{port: 80}], selector: *a10}\n");
    cases.push(rejected("laughs-in-service", s, "document 1", ""));
    let mut s = String::from("m0: &m0 {k: v}\n");
    for i in 1..=12 {
        let keys: Vec<String> = (0..8).map(|j| format!("k{j}: *m{}", i - 1)).collect();
        writeln!(s, "m{i}: &m{i} {{{}}}", keys.join(", ")).unwrap();
    }
    cases.push(rejected("laughs-maps", s, "document 1", ""));
    let mut s = String::from("b0: &b0 {x: 1}\n");
    for i in 1..=20 {
        writeln!(
            s,
            "b{i}: &b{i} {{<<: [*b{p}, *b{p}], y{i}: *b{p}, z{i}: *b{p}}}",
            p = i - 1
        )
        .unwrap();
    }
    cases.push(rejected("laughs-merge-keys", s, "document 1", ""));
    cases.push(rejected(
        "alias-undefined",
        "apiVersion: v1\nkind: Service\nmetadata: *nope\n",
        "document 1",
        "",
    ));
    cases.push(rejected("alias-self", "a: &a [*a]\n", "document 1", ""));
    cases
}

fn deep_nesting() -> Vec<Case> {
    let mut cases = vec![];
    for depth in [200, 1_000, 10_000, 100_000] {
        let s = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let seq = rejected(format!("nested-flow-seq-{depth}"), s, "document 1", "");
        let s = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
        let map = rejected(format!("nested-flow-map-{depth}"), s, "document 1", "");
        cases.extend([seq, map]);
    }
    for depth in [200, 2_000] {
        let mut s = String::new();
        for i in 0..depth {
            writeln!(s, "{}k:", " ".repeat(i)).unwrap();
        }
        cases.push(rejected(
            format!("nested-block-map-{depth}"),
            s,
            "document 1",
            "",
        ));
        let mut s = String::new();
        for i in 0..depth {
            writeln!(s, "{}-", " ".repeat(2 * i)).unwrap();
        }
        cases.push(rejected(
            format!("nested-block-seq-{depth}"),
            s,
            "document 1",
            "",
        ));
    }
    // Deep but well-formed inside a resource's spec.
    let s = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: deep, namespace: shop}}\nspec: {{hosts: [web], http: {}x{}}}\n",
        "[".repeat(120),
        "]".repeat(120)
    );
    cases.push(rejected(
        "nested-in-virtualservice",
        s,
        "VirtualService shop/deep",
        "spec.http",
    ));
    cases
}

fn syntax() -> Vec<Case> {
    let docs: &[(&str, &str)] = &[
        (
            "unclosed-quote",
            "apiVersion: v1\nkind: Service\nmetadata: {name: \"web\n",
        ),
        ("unclosed-flow", "apiVersion: v1\nkind: [Service\n"),
        ("colon-soup", ": : :\n- - -\n"),
        (
            "bad-indent",
            "apiVersion: v1\n kind: Service\n  metadata: x\n",
        ),
        ("yaml-directive", "%YAML 9.9\n---\napiVersion: v1\n"),
        (
            "unknown-tag",
            "apiVersion: v1\nkind: Service\nmetadata: !!python/object:os.system {name: x}\n",
        ),
        (
            "duplicate-key",
            "apiVersion: v1\nkind: Service\nkind: Pod\nmetadata: {name: x}\n",
        ),
        ("nul-byte", "apiVersion: v1\nkind: Serv\0ice\n"),
        ("control-chars", "apiVersion: v1\nkind: \x07\x08\x1b[31m\n"),
        ("lone-document-end", "...\n...\n]\n"),
        (
            "tab-in-flow",
            "apiVersion: v1\nkind: Service\nmetadata: {\tname: [\t}\n",
        ),
        (
            "binary-tag",
            "apiVersion: v1\nkind: !!binary aGVsbG8=\nmetadata: {name: x}\n",
        ),
    ];
    let mut cases: Vec<Case> = docs
        .iter()
        .map(|(name, text)| rejected(format!("syntax-{name}"), *text, "document", ""))
        .collect();
    // A syntax error in the third document names that document.
    cases.push(rejected(
        "syntax-third-document",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n---\nkind: [\n",
        "document 3",
        "",
    ));
    // Top-level values that are not objects.
    for (name, text) in [
        ("scalar", "just a string\n"),
        ("number", "42\n"),
        ("list", "- a\n- b\n"),
        ("empty-map", "{}\n"),
        ("bool", "true\n"),
    ] {
        cases.push(rejected(
            format!("top-level-{name}"),
            text,
            "document 1",
            "",
        ));
    }
    cases
}

fn invalid_utf8() -> Vec<Case> {
    let bad: &[(&str, &[u8])] = &[
        ("ff", b"\xff\xfe\xfd"),
        ("lone-continuation", b"apiVersion: v1\nkind: \x80Service\n"),
        ("overlong", b"apiVersion: v1\nkind: \xc0\xafService\n"),
        (
            "truncated",
            b"apiVersion: v1\nkind: Service\nmetadata: {name: \xe2\x82}\n",
        ),
        ("surrogate", b"metadata: {name: \xed\xa0\x80}\n"),
        ("utf16-bom", b"\xff\xfea\x00p\x00i\x00"),
        (
            "latin1",
            b"apiVersion: v1\nkind: Namespace\nmetadata: {name: caf\xe9}\n",
        ),
    ];
    bad.iter()
        .map(|(name, bytes)| rejected(format!("utf8-{name}"), bytes.to_vec(), "", ""))
        .collect()
}

fn service(name: &str, port: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{clusterIP: None, ports: [{{port: {port}}}]}}\n")
}

fn big() -> Vec<Case> {
    let mut cases = vec![];
    const TEN_MB: usize = 10 * 1024 * 1024;
    // 10 MB of comments, then one bad resource.
    let mut s = String::with_capacity(TEN_MB + 200);
    while s.len() < TEN_MB {
        s.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    s.push_str(&service("after-padding", "http"));
    cases.push(rejected(
        "big-10mb-comments",
        s,
        "Service shop/after-padding",
        "spec.ports[0].port",
    ));
    // A 10 MB name.
    let s = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
        "a".repeat(TEN_MB)
    );
    cases.push(rejected("big-10mb-name", s, "Namespace", "metadata.name"));
    // A 1 MB list (500k items) where labels belong.
    let s = format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: huge-label\n  namespace: shop\n  labels: {{x: [{}]}}\n", "1,".repeat(TEN_MB / 20));
    cases.push(rejected(
        "big-1mb-label-list",
        s,
        "Service shop/huge-label",
        "metadata.labels",
    ));
    // 10k objects, one of them bad (at the end, in the middle).
    for (bad_at, label) in [(9_999, "last"), (5_000, "middle")] {
        let mut s = String::new();
        for i in 0..10_000 {
            let port = if i == bad_at { "70000" } else { "80" };
            s.push_str(&service(&format!("svc-{i:05}"), port));
            s.push_str("---\n");
        }
        cases.push(rejected(
            format!("big-10k-services-bad-{label}"),
            s,
            &format!("Service shop/svc-{bad_at:05}"),
            "spec.ports[0].port",
        ));
    }
    // 10k objects with one duplicate name.
    let mut s = String::new();
    for i in 0..10_000 {
        s.push_str(&service(
            &format!("dup-{:05}", if i == 9_000 { 17 } else { i }),
            "80",
        ));
        s.push_str("---\n");
    }
    cases.push(rejected(
        "big-10k-services-duplicate",
        s,
        "Service shop/dup-00017",
        "",
    ));
    // A List of 10k items, the last one bad.
    let mut s = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for i in 0..10_000 {
        let port = if i == 9_999 { "-1" } else { "80" };
        writeln!(s, "- {{apiVersion: v1, kind: Service, metadata: {{name: item-{i}, namespace: shop}}, spec: {{ports: [{{port: {port}}}]}}}}").unwrap();
    }
    cases.push(rejected(
        "big-10k-list-items",
        s,
        "Service shop/item-9999",
        "spec.ports[0].port",
    ));
    // 20k ports on one Service, one bad.
    let mut ports = String::new();
    for i in 0..20_000u32 {
        write!(
            ports,
            "{{port: {}}},",
            if i == 19_999 { 0 } else { 1 + i % 60_000 }
        )
        .unwrap();
    }
    cases.push(rejected("big-20k-ports", format!("apiVersion: v1\nkind: Service\nmetadata: {{name: ports, namespace: shop}}\nspec: {{ports: [{ports}]}}\n"), "Service shop/ports", "spec.ports"));
    cases
}

/// One field of one kind and the values that are wrong for it.
struct Field {
    kind: &'static str,
    /// The document with `@V@` where the value goes.
    template: &'static str,
    field: &'static str,
    bad: &'static [&'static str],
}

const NUM_BAD: &[&str] = &[
    "http",
    "[1]",
    "{a: 1}",
    "-1",
    "70000",
    "1.5",
    "true",
    "99999999999999999999999",
];
const STR_BAD: &[&str] = &["[a]", "{a: b}"];
const LIST_BAD: &[&str] = &["x", "5", "{a: b}"];
const MAP_BAD: &[&str] = &["x", "[a]", "5", "{a: [1]}", "{a: {b: c}}"];
const ENUM_BAD: &[&str] = &["BOGUS", "[ALLOW]", "{a: b}", "7"];
const DURATION_BAD: &[&str] = &["abc", "-1s", "[1s]", "1s1", "99999999999999h"];
const PERCENT_BAD: &[&str] = &["200", "-1", "x", "[1]", ".nan"];
const IP_BAD: &[&str] = &["10.0.0.300", "x", "[1]", "10.0.0", "\"::g\""];

const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: shop}\nspec:\n  ports: [{port: 80}]\n";
const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec:\n";
const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: h, namespace: shop}\nspec:\n";
const AP: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: h, namespace: shop}\nspec:\n";

fn fields() -> Vec<Field> {
    vec![
        Field { kind: "Service shop/h", template: "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: shop}\nspec: {ports: [{port: @V@}]}\n", field: "spec.ports[0].port", bad: NUM_BAD },
        Field { kind: "Service shop/h", template: "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: shop}\nspec: {ports: [{port: 80, targetPort: @V@}]}\n", field: "spec.ports[0].targetPort", bad: &["[1]", "{a: 1}", "-1", "70000", "1.5", "Not_A_Name!"] },
        Field { kind: "Service shop/h", template: "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: shop}\nspec: {clusterIP: @V@, ports: [{port: 80}]}\n", field: "spec.clusterIP", bad: IP_BAD },
        Field { kind: "Service shop/h", template: "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: shop}\nspec: {ports: @V@}\n", field: "spec.ports", bad: LIST_BAD },
        Field { kind: "Service shop/h", template: "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: shop, labels: @V@}\nspec: {ports: [{port: 80}]}\n", field: "metadata.labels", bad: MAP_BAD },
        Field { kind: "Service shop/h", template: "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: shop}\nspec: {selector: @V@, ports: [{port: 80}]}\n", field: "spec.selector", bad: MAP_BAD },
        Field { kind: "Service shop/h", template: "apiVersion: v1\nkind: Service\nmetadata: {name: h, namespace: shop}\nspec: @V@\n", field: "spec", bad: &["x", "[1]", "5"] },
        Field { kind: "Pod shop/h", template: "apiVersion: v1\nkind: Pod\nmetadata: {name: h, namespace: shop}\nspec: {nodeName: node-1}\nstatus: {podIP: @V@}\n", field: "status.podIP", bad: IP_BAD },
        Field { kind: "Pod shop/h", template: "apiVersion: v1\nkind: Pod\nmetadata: {name: h, namespace: shop}\nspec: {nodeName: @V@}\nstatus: {podIP: 10.244.1.9}\n", field: "spec.nodeName", bad: STR_BAD },
        Field { kind: "Pod shop/h", template: "apiVersion: v1\nkind: Pod\nmetadata: {name: h, namespace: shop, labels: @V@}\nspec: {nodeName: node-1}\nstatus: {podIP: 10.244.1.9}\n", field: "metadata.labels", bad: MAP_BAD },
        Field { kind: "Node h", template: "apiVersion: v1\nkind: Node\nmetadata: {name: h}\nstatus: {addresses: [{type: InternalIP, address: @V@}]}\n", field: "status.addresses[0].address", bad: IP_BAD },
        Field { kind: "Node h", template: "apiVersion: v1\nkind: Node\nmetadata: {name: h}\nstatus: {addresses: @V@}\n", field: "status.addresses", bad: LIST_BAD },
        Field { kind: "Namespace h", template: "apiVersion: v1\nkind: Namespace\nmetadata: {name: h, labels: @V@}\n", field: "metadata.labels", bad: MAP_BAD },
        Field { kind: "PeerAuthentication shop/h", template: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: h, namespace: shop}\nspec: {mtls: {mode: @V@}}\n", field: "spec.mtls.mode", bad: ENUM_BAD },
        Field { kind: "PeerAuthentication shop/h", template: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: h, namespace: shop}\nspec: {selector: {matchLabels: @V@}}\n", field: "spec.selector.matchLabels", bad: MAP_BAD },
        Field { kind: "PeerAuthentication shop/h", template: "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: h, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, portLevelMtls: {@V@: {mode: STRICT}}}\n", field: "spec.portLevelMtls", bad: &["abc", "70000", "-1", "[1]"] },
        Field { kind: "AuthorizationPolicy shop/h", template: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: h, namespace: shop}\nspec: {action: @V@}\n", field: "spec.action", bad: ENUM_BAD },
        Field { kind: "AuthorizationPolicy shop/h", template: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: h, namespace: shop}\nspec: {rules: @V@}\n", field: "spec.rules", bad: LIST_BAD },
        Field { kind: "AuthorizationPolicy shop/h", template: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: h, namespace: shop}\nspec: {rules: [{from: [{source: {principals: @V@}}]}]}\n", field: "spec.rules[0].from[0].source.principals", bad: &["x", "{a: b}", "[[a]]", "[{a: b}]"] },
        Field { kind: "AuthorizationPolicy shop/h", template: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: h, namespace: shop}\nspec: {rules: [{from: [{source: {ipBlocks: [@V@]}}]}]}\n", field: "spec.rules[0].from[0].source.ipBlocks", bad: &["10.0.0.0/99", "nope", "10.0.0.0/", "[1]", "\"::/129\""] },
        Field { kind: "AuthorizationPolicy shop/h", template: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: h, namespace: shop}\nspec: {rules: [{to: [{operation: {ports: [@V@]}}]}]}\n", field: "spec.rules[0].to[0].operation.ports", bad: &["abc", "\"70000\"", "\"-1\"", "[1]"] },
        Field { kind: "AuthorizationPolicy shop/h", template: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: h, namespace: shop}\nspec: {selector: {matchLabels: @V@}}\n", field: "spec.selector.matchLabels", bad: MAP_BAD },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: @V@, http: [{route: [{destination: {host: web}}]}]}\n", field: "spec.hosts", bad: LIST_BAD },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: @V@}\n", field: "spec.http", bad: LIST_BAD },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: [{match: [{uri: @V@}], route: [{destination: {host: web}}]}]}\n", field: "spec.http[0].match[0].uri", bad: &["x", "{exact: [a]}", "{bogus: a}", "{exact: a, prefix: b}", "{}"] },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: [{route: [{destination: {host: web}, weight: @V@}]}]}\n", field: "spec.http[0].route[0].weight", bad: &["-1", "x", "[1]", "1.5", "99999999999"] },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: [{timeout: @V@, route: [{destination: {host: web}}]}]}\n", field: "spec.http[0].timeout", bad: DURATION_BAD },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: [{retries: {attempts: @V@}, route: [{destination: {host: web}}]}]}\n", field: "spec.http[0].retries.attempts", bad: &["-1", "x", "[1]", "1.5"] },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: [{fault: {abort: {httpStatus: @V@, percentage: {value: 10}}}, route: [{destination: {host: web}}]}]}\n", field: "spec.http[0].fault.abort.httpStatus", bad: &["99", "700", "x", "[1]"] },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: [{fault: {abort: {httpStatus: 503, percentage: {value: @V@}}}, route: [{destination: {host: web}}]}]}\n", field: "spec.http[0].fault.abort.percentage.value", bad: PERCENT_BAD },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: [{route: [{destination: {host: web, port: {number: @V@}}}]}]}\n", field: "spec.http[0].route[0].destination.port.number", bad: NUM_BAD },
        Field { kind: "VirtualService shop/h", template: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: h, namespace: shop}\nspec: {hosts: [web], http: [{route: [{destination: {host: @V@}}]}]}\n", field: "spec.http[0].route[0].destination.host", bad: &["[a]", "{a: b}", "\"\""] },
        Field { kind: "DestinationRule shop/h", template: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: h, namespace: shop}\nspec: {host: @V@}\n", field: "spec.host", bad: &["[a]", "{a: b}", "\"\""] },
        Field { kind: "DestinationRule shop/h", template: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: h, namespace: shop}\nspec: {host: web, trafficPolicy: {loadBalancer: {simple: @V@}}}\n", field: "spec.trafficPolicy.loadBalancer.simple", bad: ENUM_BAD },
        Field { kind: "DestinationRule shop/h", template: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: h, namespace: shop}\nspec: {host: web, trafficPolicy: {connectionPool: {tcp: {maxConnections: @V@}}}}\n", field: "spec.trafficPolicy.connectionPool.tcp.maxConnections", bad: &["-1", "x", "[1]", "1.5", "99999999999"] },
        Field { kind: "DestinationRule shop/h", template: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: h, namespace: shop}\nspec: {host: web, trafficPolicy: {outlierDetection: {consecutive5xxErrors: @V@}}}\n", field: "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", bad: &["-1", "x", "[1]", "1.5"] },
        Field { kind: "DestinationRule shop/h", template: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: h, namespace: shop}\nspec: {host: web, trafficPolicy: {outlierDetection: {interval: @V@}}}\n", field: "spec.trafficPolicy.outlierDetection.interval", bad: DURATION_BAD },
        Field { kind: "DestinationRule shop/h", template: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: h, namespace: shop}\nspec: {host: web, subsets: @V@}\n", field: "spec.subsets", bad: LIST_BAD },
        Field { kind: "DestinationRule shop/h", template: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: h, namespace: shop}\nspec: {host: web, subsets: [{name: v1, labels: @V@}]}\n", field: "spec.subsets[0].labels", bad: MAP_BAD },
        Field { kind: "Gateway shop/h", template: "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: h, namespace: shop}\nspec: {gatewayClassName: istio-waypoint, listeners: @V@}\n", field: "spec.listeners", bad: LIST_BAD },
        Field { kind: "Gateway shop/h", template: "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: h, namespace: shop}\nspec: {gatewayClassName: istio-waypoint, listeners: [{name: mesh, port: @V@, protocol: HBONE}]}\n", field: "spec.listeners[0].port", bad: NUM_BAD },
        Field { kind: "Gateway shop/h", template: "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: h, namespace: shop}\nspec: {gatewayClassName: @V@}\n", field: "spec.gatewayClassName", bad: STR_BAD },
    ]
}

fn wrong_types() -> Vec<Case> {
    let _ = (SVC, VS, DR, AP);
    let mut cases = vec![];
    for (i, f) in fields().iter().enumerate() {
        for (j, bad) in f.bad.iter().enumerate() {
            let content = f.template.replace("@V@", bad);
            let kind = f.kind.split_whitespace().next().unwrap().to_lowercase();
            // Integers beyond 64 bits fail in the YAML parser, which
            // names the document and puts the path in its message.
            let resource = if bad.starts_with("99999999999999999999") {
                "document 1"
            } else {
                f.kind
            };
            cases.push(rejected(
                format!("type-{kind}-{i:02}-{j}"),
                content,
                resource,
                f.field,
            ));
        }
    }
    cases
}

fn duplicates() -> Vec<Case> {
    let mut cases = vec![];
    for (name, text, resource) in [
        ("service", "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n", "Service shop/web"),
        ("namespace", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "Namespace shop"),
        ("node", "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n", "Node node-1"),
        ("pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}\nspec: {nodeName: node-1}\nstatus: {podIP: 10.244.1.6}\n", "Pod shop/web-1"),
        ("virtualservice", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: web, namespace: shop}\nspec: {hosts: [web], http: [{route: [{destination: {host: web}}]}]}\n", "VirtualService shop/web"),
        ("virtualservice-other-version", "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: web, namespace: shop}\nspec: {hosts: [web], http: [{route: [{destination: {host: web}}]}]}\n", "VirtualService shop/web"),
        ("destinationrule", "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: web, namespace: shop}\nspec: {host: web}\n", "DestinationRule shop/web"),
        ("authorizationpolicy", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-web, namespace: shop}\nspec: {}\n", "AuthorizationPolicy shop/allow-web"),
    ] {
        cases.push(rejected(format!("duplicate-{name}"), text, resource, ""));
    }
    cases.push(rejected(
        "duplicate-in-same-file",
        "apiVersion: v1\nkind: Service\nmetadata: {name: twice, namespace: shop}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: twice, namespace: shop}\nspec: {ports: [{port: 81}]}\n",
        "Service shop/twice",
        "",
    ));
    cases.push(rejected(
        "duplicate-subset",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: subsets, namespace: shop}\nspec: {host: web, subsets: [{name: v1, labels: {a: b}}, {name: v1, labels: {a: c}}]}\n",
        "DestinationRule shop/subsets",
        "spec.subsets[1].name",
    ));
    cases.push(rejected(
        "duplicate-port",
        "apiVersion: v1\nkind: Service\nmetadata: {name: ports, namespace: shop}\nspec: {ports: [{name: a, port: 80}, {name: b, port: 80}]}\n",
        "Service shop/ports",
        "spec.ports[1]",
    ));
    cases
}

fn kinds_and_names() -> Vec<Case> {
    let mut cases = vec![];
    for (name, text, warning) in [
        (
            "foobar",
            "apiVersion: v1\nkind: FooBar\nmetadata: {name: x}\n",
            "FooBar",
        ),
        (
            "crd-group",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: shop}\n",
            "Widget",
        ),
        (
            "configmap",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {a: b}\n",
            "ConfigMap",
        ),
        (
            "deployment",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: shop}\n",
            "Deployment",
        ),
    ] {
        cases.push(Case {
            name: format!("unknown-kind-{name}"),
            content: text.into(),
            expect: Expect::Skipped {
                warning: warning.into(),
            },
        });
    }
    for (name, text, resource, field) in [
        ("kind-number", "apiVersion: v1\nkind: 5\nmetadata: {name: x}\n", "document 1", "kind"),
        ("kind-missing", "apiVersion: v1\nmetadata: {name: x}\n", "document 1", "kind"),
        ("kind-list", "apiVersion: v1\nkind: [Service]\nmetadata: {name: x}\n", "document 1", "kind"),
        ("apiversion-missing", "kind: Service\nmetadata: {name: x}\n", "document 1", "apiVersion"),
        ("apiversion-map", "apiVersion: {v: 1}\nkind: Service\nmetadata: {name: x}\n", "document 1", "apiVersion"),
        ("peerauthn-version", "apiVersion: security.istio.io/v9\nkind: PeerAuthentication\nmetadata: {name: x, namespace: shop}\nspec: {}\n", "PeerAuthentication shop/x", "apiVersion"),
        ("metadata-string", "apiVersion: v1\nkind: Service\nmetadata: web\n", "Service", "metadata"),
        ("metadata-list", "apiVersion: v1\nkind: Service\nmetadata: [web]\n", "Service", "metadata"),
        ("list-items-map", "apiVersion: v1\nkind: List\nitems: {a: b}\n", "document 1", "items"),
        ("list-item-scalar", "apiVersion: v1\nkind: List\nitems: [5]\n", "document 1, item 1", ""),
    ] {
        cases.push(rejected(format!("kind-{name}"), text, resource, field));
    }
    let long = "a".repeat(300);
    for (i, bad) in [
        "Web",
        "web_1",
        "web 1",
        "-web",
        "web-",
        "wéb",
        "../etc",
        "\"\"",
        "5",
        "[web]",
        long.as_str(),
        "a.b",
    ]
    .iter()
    .enumerate()
    {
        // `a.b` is a valid subdomain (Service names allow it? no: DNS-1035 label), kept to see.
        let text = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {bad}}}\n");
        cases.push(rejected(
            format!("name-namespace-{i:02}"),
            text,
            "Namespace",
            "metadata.name",
        ));
        let text = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: x, namespace: {bad}}}\nspec: {{ports: [{{port: 80}}]}}\n");
        cases.push(rejected(
            format!("name-in-namespace-{i:02}"),
            text,
            "Service",
            "metadata.namespace",
        ));
    }
    cases
}

fn regexes() -> Vec<Case> {
    let vs = |re: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: re, namespace: shop}}\nspec: {{hosts: [web], http: [{{match: [{{uri: {{regex: '{re}'}}}}], route: [{{destination: {{host: web}}}}]}}]}}\n")
    };
    let hdr = |re: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: re, namespace: shop}}\nspec: {{hosts: [web], http: [{{match: [{{headers: {{x: {{regex: '{re}'}}}}}}], route: [{{destination: {{host: web}}}}]}}]}}\n")
    };
    let alternation: Vec<String> = (0..20_000).map(|i| format!("word{i}")).collect();
    let alternation = alternation.join("|");
    let mut cases = vec![];
    // Invalid syntax: rejected today.
    for (i, re) in [
        "(unclosed",
        "[z-a]",
        "a{2,1}",
        "\\",
        "(?P<n>a)(?P<n>b)",
        "*",
    ]
    .iter()
    .enumerate()
    {
        cases.push(rejected(
            format!("regex-invalid-{i}"),
            vs(re),
            "VirtualService shop/re",
            "spec.http[0].match[0].uri.regex",
        ));
    }
    // Expensive to compile or to hold: refused by mesh-control's regex
    // size budget.
    let heavy = [
        "(?:a{1000}){1000}".to_string(),
        ".{1000}{1000}".to_string(),
        "\\w{5000}".to_string(),
        "[\\p{L}\\p{N}]{3000}".to_string(),
        "(?:(?:(?:a{100}){100}){100})".to_string(),
        "a{1001}".to_string(),
        alternation,
        "(?:\\pL|\\pN|\\pP){2000}".to_string(),
    ];
    for (i, re) in heavy.iter().enumerate() {
        for (form, text, field) in [
            ("uri", vs(re), "spec.http[0].match[0].uri.regex"),
            ("header", hdr(re), "spec.http[0].match[0].headers.x.regex"),
        ] {
            cases.push(rejected(
                format!("regex-heavy-{i}-{form}"),
                text,
                "VirtualService shop/re",
                field,
            ));
        }
    }
    cases
}
