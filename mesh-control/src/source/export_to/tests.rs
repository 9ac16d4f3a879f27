use crate::source::{load_files, Snapshot, SourceConfig};

fn load(yaml: &str) -> Result<Snapshot, Vec<String>> {
    load_files(
        &[("e.yaml".to_string(), yaml.to_string())],
        &SourceConfig::default(),
    )
    .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

fn resource(kind: &str, export_to: &str) -> String {
    let spec = match kind {
        "VirtualService" => "hosts: [reviews]\n  http: [{route: [{destination: {host: reviews}}]}]",
        "DestinationRule" => "host: reviews",
        _ => "hosts: [www.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]",
    };
    format!("apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: r, namespace: shop}}\nspec:\n  {spec}\n  exportTo: {export_to}\n")
}

const KINDS: [&str; 3] = ["VirtualService", "DestinationRule", "ServiceEntry"];

#[test]
fn accepted_entries_are_kept_as_written() {
    for kind in KINDS {
        for (written, kept) in [
            ("[\".\"]", vec!["."]),
            ("[\"*\"]", vec!["*"]),
            ("[\"~\"]", vec!["~"]),
            ("[\".\", web, api-2]", vec![".", "web", "api-2"]),
            ("[]", vec![]),
        ] {
            let snapshot = load(&resource(kind, written))
                .unwrap_or_else(|p| panic!("{kind} {written}: {p:?}"));
            let state = &snapshot.state;
            let got = match kind {
                "VirtualService" => &state.virtual_services[0].export_to,
                "DestinationRule" => &state.destination_rules[0].export_to,
                _ => &state.service_entries[0].export_to,
            };
            assert_eq!(got, &kept, "{kind} {written}");
        }
    }
}

#[test]
fn invalid_entries_are_rejected_naming_the_entry() {
    for kind in KINDS {
        for (written, want) in [
            (
                "[Web]",
                "spec.exportTo[0]: \"Web\" is not \".\", \"*\", \"~\" or a namespace name",
            ),
            ("[\"a.b\"]", "spec.exportTo[0]: \"a.b\" is not"),
            ("[web, web]", "spec.exportTo[1]: \"web\" is listed twice"),
            (
                "[\".\", shop]",
                "spec.exportTo[1]: \".\" and \"shop\" both name",
            ),
            ("[\"*\", web]", "spec.exportTo: \"*\" cannot be combined"),
            ("[\"~\", \".\"]", "spec.exportTo: \"~\" cannot be combined"),
            ("\".\"", "spec.exportTo: expected a list"),
        ] {
            let problems = load(&resource(kind, written)).expect_err(written);
            assert_eq!(problems.len(), 1, "{kind} {written}: {problems:?}");
            assert!(
                problems[0].contains(&format!("{kind} shop/r: {want}")),
                "{kind} {written}: {problems:?}"
            );
        }
    }
}

#[test]
fn a_destination_rule_with_a_workload_selector_stays_in_its_namespace() {
    let selected = |export_to: &str| {
        resource("DestinationRule", export_to).replace(
            "host: reviews",
            "host: reviews\n  workloadSelector: {matchLabels: {app: web}}",
        )
    };
    for ok in ["[\".\"]", "[shop]", "[]"] {
        assert!(load(&selected(ok)).is_ok(), "{ok}");
    }
    let problems = load(&selected("[\"*\"]")).unwrap_err();
    assert!(
        problems[0].contains("spec.exportTo: a DestinationRule with a workloadSelector"),
        "{problems:?}"
    );
}
