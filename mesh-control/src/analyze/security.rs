//! Security checks beyond what the AuthorizationPolicy translation reports
//! (those findings come with the load): principals that cannot match a
//! mesh identity as written, address-based rules that only mesh clients
//! are held to, and PeerAuthentication selectors that select nothing.
use serde_yaml::Value;

use super::{codes, Finding, Severity};
use crate::{
    model::authz::{Condition, L4Values},
    source::{documents::Document, Snapshot, SourceConfig},
};

pub(crate) fn check(
    snapshot: &Snapshot,
    docs: &[Document],
    config: &SourceConfig,
    findings: &mut Vec<Finding>,
) {
    principals(snapshot, findings);
    address_rules(snapshot, findings);
    peer_authentication_selectors(snapshot, docs, config, findings);
}

/// True for `<trust-domain>/ns/<namespace>/sa/<account>` (with or without
/// `spiffe://`). Wildcard patterns are not judged: `*`, `x*` and `*x` are
/// legitimate partial matches.
fn identity_form(value: &str) -> bool {
    if value.starts_with('*') || value.ends_with('*') {
        return true;
    }
    let value = value.strip_prefix("spiffe://").unwrap_or(value);
    let parts: Vec<&str> = value.split('/').collect();
    parts.len() == 5
        && parts[1] == "ns"
        && parts[3] == "sa"
        && [parts[0], parts[2], parts[4]].iter().all(|p| !p.is_empty())
}

fn principals(snapshot: &Snapshot, findings: &mut Vec<Finding>) {
    for policy in &snapshot.state.authorization_policies {
        let mut values: Vec<(String, &String)> = vec![];
        for (r, rule) in policy.rules.iter().enumerate() {
            for (f, source) in rule.from.iter().flatten().enumerate() {
                for (name, list) in [
                    ("principals", &source.principals),
                    ("notPrincipals", &source.not_principals),
                ] {
                    for (k, value) in list.iter().enumerate() {
                        let field = format!("spec.rules[{r}].from[{f}].source.{name}[{k}]");
                        values.push((field, value));
                    }
                }
            }
            for (w, condition) in rule.when.iter().enumerate() {
                let Condition::L4 {
                    key,
                    values: positive,
                    not_values,
                } = condition
                else {
                    continue;
                };
                if key != "source.principal" {
                    continue;
                }
                for (name, list) in [("values", positive), ("notValues", not_values)] {
                    if let L4Values::SourcePrincipal(list) = list {
                        for (k, value) in list.iter().enumerate() {
                            values.push((format!("spec.rules[{r}].when[{w}].{name}[{k}]"), value));
                        }
                    }
                }
            }
        }
        for (field, value) in values {
            if !identity_form(value) {
                findings.push(Finding {
                    severity: Severity::Info,
                    code: codes::AUTHZ_PRINCIPAL_FORM,
                    resource: policy.resource(),
                    file: Some(policy.file.clone()),
                    field: Some(field),
                    message: format!("principal {value:?} is not of the form <trust-domain>/ns/<namespace>/sa/<service-account>; mesh identities never match it exactly"),
                    suggestion: format!("write e.g. \"{}/ns/{}/sa/<service-account>\", or use namespaces / a wildcard", snapshot.state.trust_domain, policy.namespace),
                });
            }
        }
    }
}

/// The file a resource was read from, from the documents analyzed.
/// ipBlocks / notIpBlocks / `when: source.ip`: the agents match them for
/// mesh clients (HBONE carries the source pod's address, same-node
/// delivery knows it). Plaintext from outside the mesh is not captured on
/// the way in, so it is only stopped when the pod's policies admit no
/// identity-less client at all (ARCHITECTURE.md, decision 10).
fn address_rules(snapshot: &Snapshot, findings: &mut Vec<Finding>) {
    for policy in &snapshot.state.authorization_policies {
        let mut fields = vec![];
        for (r, rule) in policy.rules.iter().enumerate() {
            for (f, source) in rule.from.iter().flatten().enumerate() {
                if !source.ip_blocks.is_empty() {
                    fields.push(format!("spec.rules[{r}].from[{f}].source.ipBlocks"));
                }
                if !source.not_ip_blocks.is_empty() {
                    fields.push(format!("spec.rules[{r}].from[{f}].source.notIpBlocks"));
                }
            }
            for (w, condition) in rule.when.iter().enumerate() {
                if matches!(condition, Condition::L4 { key, .. } if key == "source.ip") {
                    fields.push(format!("spec.rules[{r}].when[{w}]"));
                }
            }
        }
        if let Some(field) = fields.into_iter().next() {
            findings.push(Finding {
                severity: Severity::Info,
                code: codes::AUTHZ_ADDRESS_PLAINTEXT,
                resource: policy.resource(),
                file: Some(policy.file.clone()),
                field: Some(field),
                message: "source addresses are matched for mesh clients; plaintext clients outside the mesh are not captured on the way in, so an address rule alone does not stop them".into(),
                suggestion: "combine with PeerAuthentication STRICT, or require principals/namespaces in the ALLOW rules (pods whose policies admit no identity-less client drop plaintext in the kernel)".into(),
            });
        }
    }
}

fn file_of(docs: &[Document], kind: &str, namespace: &str, name: &str) -> Option<String> {
    docs.iter()
        .find(|d| {
            let v = &d.value;
            v.get("kind").and_then(Value::as_str) == Some(kind)
                && v["metadata"].get("name").and_then(Value::as_str) == Some(name)
                && v["metadata"]
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    == namespace
        })
        .map(|d| d.file.clone())
        .filter(|f| !f.is_empty())
}

fn peer_authentication_selectors(
    snapshot: &Snapshot,
    docs: &[Document],
    config: &SourceConfig,
    findings: &mut Vec<Finding>,
) {
    let state = &snapshot.state;
    for pa in &state.peer_authentications {
        if pa.selector.is_empty() {
            continue;
        }
        // A selector policy applies in its own namespace only, the root
        // namespace included (Istio).
        let matched = state.workloads.values().any(|w| {
            w.namespace == pa.namespace
                && pa.selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
        });
        if matched {
            continue;
        }
        let labels: Vec<String> = pa
            .selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let root = if pa.namespace == config.root_namespace {
            " (in the root namespace a selector does not make a policy mesh-wide)"
        } else {
            ""
        };
        findings.push(Finding {
            severity: Severity::Warning,
            code: codes::PA_SELECTOR_EMPTY,
            resource: format!("PeerAuthentication {}/{}", pa.namespace, pa.name),
            file: file_of(docs, "PeerAuthentication", &pa.namespace, &pa.name),
            field: Some("spec.selector.matchLabels".into()),
            message: format!(
                "selector {{{}}} matches no pod of namespace {}{root}",
                labels.join(","),
                pa.namespace
            ),
            suggestion:
                "check the labels against the pods; drop the selector for a namespace-wide policy"
                    .into(),
        });
    }
}
