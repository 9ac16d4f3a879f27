//! `security.istio.io/v1` and `v1beta1` AuthorizationPolicy: YAML → the
//! typed [`AuthorizationPolicy`], validated as istiod's webhook validates
//! it, so that YAML Istio accepts is accepted here and YAML it rejects is
//! rejected here, each problem naming the field
//! (`spec.rules[0].from[1].source.ipBlocks[2]`).
//!
//! Fields Istio defines but an L4 agent cannot evaluate (request
//! principals, hosts, methods, paths, `request.*` conditions, …) are kept
//! in the model; what to do with them is decided in
//! [`crate::translate::authorization`]. A field of `source` / `operation`
//! this version does not know (a newer Istio's) is kept by name and treated
//! the same way: accepted, never matched at L4.
use serde_yaml::{Mapping, Value};

use super::fields::{self, blocks, lookup, ports, strings, Reporter};
use crate::model::authz::{
    AuthorizationPolicy, AuthzAction, AuthzRule, Condition, L4Values, Operation, Source, TargetRef,
};

/// The annotation that makes a policy dry-run (evaluated and logged only).
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// `when` keys an L4 agent evaluates.
const L4_KEYS: &[&str] = &[
    "source.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "destination.ip",
    "destination.port",
];
/// Valid Istio `when` keys only a request-aware proxy can evaluate.
const L7_KEYS: &[&str] = &[
    "remote.ip",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "connection.sni",
    "source.user",
];
/// Valid Istio `when` key prefixes (`request.headers[x-token]`, …), all L7.
const L7_PREFIXES: &[&str] = &[
    "request.headers[",
    "request.auth.claims[",
    "experimental.envoy.filters.",
];

/// Parses the policy in `value` (already known to be an AuthorizationPolicy
/// named `namespace/name`); `None` when any problem was reported.
pub(crate) fn authorization_policy(
    rep: &mut Reporter<'_>,
    value: &Value,
    version: &str,
    name: &str,
    namespace: &str,
) -> Option<AuthorizationPolicy> {
    let before = rep.count();
    if !matches!(version, "v1" | "v1beta1") {
        rep.error(
            "apiVersion",
            format!("security.istio.io/{version} is not an AuthorizationPolicy version (use security.istio.io/v1 or v1beta1)"),
        );
        return None;
    }
    let dry_run = dry_run(rep, value);
    let selector = match lookup(value, "spec.selector") {
        None => None,
        Some(Value::Mapping(_)) => {
            Some(fields::string_map(rep, value, "spec.selector.matchLabels"))
        }
        Some(other) => {
            rep.error(
                "spec.selector",
                format!("expected a mapping, found {}", fields::type_name(other)),
            );
            None
        }
    };
    let mut target_refs = vec![];
    if let Some(target) = lookup(value, "spec.targetRef") {
        target_refs.extend(target_ref(rep, target, "spec.targetRef", namespace));
    }
    let refs = fields::seq(rep, value, "spec.targetRefs");
    for (i, target) in refs.iter().enumerate() {
        target_refs.extend(target_ref(
            rep,
            target,
            &format!("spec.targetRefs[{i}]"),
            namespace,
        ));
    }
    let has_target_ref = lookup(value, "spec.targetRef").is_some();
    if has_target_ref && !refs.is_empty() {
        rep.error(
            "spec.targetRefs",
            "only one of targetRef and targetRefs may be set",
        );
    }
    if selector.is_some() && (has_target_ref || !refs.is_empty()) {
        let field = if has_target_ref {
            "spec.targetRef"
        } else {
            "spec.targetRefs"
        };
        rep.error(
            field,
            "only one of selector and targetRef(s) may be set (a policy applies either to the pods a selector picks or to the named objects)",
        );
    }
    let action = action(rep, value);
    let mut rules = vec![];
    for (i, rule_value) in fields::seq(rep, value, "spec.rules").iter().enumerate() {
        if let Some(rule) = rule(rep, rule_value, &format!("spec.rules[{i}]")) {
            rules.push(rule);
        }
    }
    (rep.count() == before).then(|| AuthorizationPolicy {
        name: name.to_string(),
        namespace: namespace.to_string(),
        file: rep.file.to_string(),
        selector,
        target_refs,
        action,
        rules,
        dry_run,
    })
}

fn dry_run(rep: &mut Reporter<'_>, value: &Value) -> bool {
    let field = format!("metadata.annotations[\"{DRY_RUN_ANNOTATION}\"]");
    let annotation = lookup(value, "metadata.annotations")
        .and_then(Value::as_mapping)
        .and_then(|m| m.get(DRY_RUN_ANNOTATION));
    match annotation {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        // Go's strconv.ParseBool, which istiod uses.
        Some(Value::String(s)) => match s.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            other => {
                rep.error(field, format!("{other:?} is not \"true\" or \"false\""));
                false
            }
        },
        Some(other) => {
            rep.error(
                field,
                format!(
                    "expected \"true\" or \"false\", found {}",
                    fields::show(other)
                ),
            );
            false
        }
    }
}

fn action(rep: &mut Reporter<'_>, value: &Value) -> AuthzAction {
    let provider = lookup(value, "spec.provider");
    let action = match fields::opt_str(rep, value, "spec.action").as_deref() {
        None | Some("ALLOW") => AuthzAction::Allow,
        Some("DENY") => AuthzAction::Deny,
        Some("AUDIT") => AuthzAction::Audit,
        Some("CUSTOM") => {
            let provider = fields::req_str(rep, value, "spec.provider.name").unwrap_or_default();
            return AuthzAction::Custom { provider };
        }
        Some(other) => {
            rep.error(
                "spec.action",
                format!("{other:?} is not an action (ALLOW, DENY, AUDIT or CUSTOM)"),
            );
            AuthzAction::Allow
        }
    };
    if provider.is_some() {
        rep.error(
            "spec.provider",
            format!(
                "a provider is only used with action CUSTOM, not {}",
                action.as_str()
            ),
        );
    }
    action
}

/// Istio's accepted targets; anything else is rejected as istiod does.
const TARGET_KINDS: &[(&str, &str)] = &[
    ("", "Service"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
    ("networking.istio.io", "ServiceEntry"),
];

fn target_ref(
    rep: &mut Reporter<'_>,
    value: &Value,
    field: &str,
    namespace: &str,
) -> Option<TargetRef> {
    if !value.is_mapping() {
        rep.error(
            field,
            format!("expected a mapping, found {}", fields::type_name(value)),
        );
        return None;
    }
    let before = rep.count();
    let sub = |f: &str| format!("{field}.{f}");
    let group = sub_str(rep, value, "group", &sub("group")).unwrap_or_default();
    let kind = sub_str(rep, value, "kind", &sub("kind"));
    let name = sub_str(rep, value, "name", &sub("name"));
    if kind.is_none() && rep.count() == before {
        rep.error(sub("kind"), "required field is missing");
    }
    if name.is_none() && rep.count() == before {
        rep.error(sub("name"), "required field is missing");
    }
    if let Some(ns) = sub_str(rep, value, "namespace", &sub("namespace")) {
        if ns != namespace {
            rep.error(
                sub("namespace"),
                format!(
                    "{ns:?}: a policy can only target objects of its own namespace ({namespace:?})"
                ),
            );
        }
    }
    let (kind, name) = (kind?, name?);
    // `core` is how some users spell the core group.
    let group = if group == "core" {
        String::new()
    } else {
        group
    };
    if !TARGET_KINDS.contains(&(group.as_str(), kind.as_str())) {
        let shown = if group.is_empty() {
            kind.clone()
        } else {
            format!("{group}/{kind}")
        };
        rep.error(
            sub("kind"),
            format!("{shown} cannot be targeted (Service, gateway.networking.k8s.io Gateway or GatewayClass, networking.istio.io ServiceEntry)"),
        );
        return None;
    }
    Some(TargetRef {
        group,
        kind,
        name,
        field: field.to_string(),
    })
}

/// A string field `key` of `node`, reported as `field`.
fn sub_str(rep: &mut Reporter<'_>, node: &Value, key: &str, field: &str) -> Option<String> {
    match node.as_mapping()?.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => {
            rep.error(
                field,
                format!("expected a string, found {}", fields::show(other)),
            );
            None
        }
    }
}

fn rule(rep: &mut Reporter<'_>, value: &Value, field: &str) -> Option<AuthzRule> {
    let Some(map) = value.as_mapping() else {
        rep.error(
            field,
            format!("expected a mapping, found {}", fields::type_name(value)),
        );
        return None;
    };
    let before = rep.count();
    let from = entries(rep, map, "from", field).map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(i, entry)| {
                let at = format!("{field}.from[{i}]");
                let source = wrapped(rep, entry, "source", &at)?;
                Some(source_of(rep, source, &format!("{at}.source")))
            })
            .collect()
    });
    let to = entries(rep, map, "to", field).map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(i, entry)| {
                let at = format!("{field}.to[{i}]");
                let operation = wrapped(rep, entry, "operation", &at)?;
                Some(operation_of(rep, operation, &format!("{at}.operation")))
            })
            .collect()
    });
    let mut when = vec![];
    if let Some(list) = entries(rep, map, "when", field) {
        for (i, entry) in list.iter().enumerate() {
            when.extend(condition(rep, entry, &format!("{field}.when[{i}]")));
        }
    }
    (rep.count() == before).then_some(AuthzRule { from, to, when })
}

/// The list under `key` of a rule; `None` when absent. Istio rejects an
/// explicitly empty `from` / `to` / `when` (it would read as "anything"
/// while looking like "nothing").
fn entries<'v>(
    rep: &mut Reporter<'_>,
    map: &'v Mapping,
    key: &str,
    field: &str,
) -> Option<&'v [Value]> {
    match map.get(key)? {
        Value::Null => None,
        Value::Sequence(list) if list.is_empty() => {
            rep.error(format!("{field}.{key}"), "must not be empty when present");
            None
        }
        Value::Sequence(list) => Some(list),
        other => {
            rep.error(
                format!("{field}.{key}"),
                format!("expected a list, found {}", fields::type_name(other)),
            );
            None
        }
    }
}

/// `entry.<key>` (`from[i].source`, `to[i].operation`): a required,
/// non-empty mapping.
fn wrapped<'v>(
    rep: &mut Reporter<'_>,
    entry: &'v Value,
    key: &str,
    field: &str,
) -> Option<&'v Mapping> {
    let Some(map) = entry.as_mapping() else {
        rep.error(
            field,
            format!("expected a mapping, found {}", fields::type_name(entry)),
        );
        return None;
    };
    match map.get(key) {
        None | Some(Value::Null) => {
            rep.error(format!("{field}.{key}"), "required field is missing");
            None
        }
        Some(Value::Mapping(m)) if m.is_empty() => {
            rep.error(format!("{field}.{key}"), "must not be empty");
            None
        }
        Some(Value::Mapping(m)) => Some(m),
        Some(other) => {
            rep.error(
                format!("{field}.{key}"),
                format!("expected a mapping, found {}", fields::type_name(other)),
            );
            None
        }
    }
}

/// The keys of `map` in file order, with their values (non-string keys
/// are reported).
fn keyed<'v>(rep: &mut Reporter<'_>, map: &'v Mapping, field: &str) -> Vec<(&'v str, &'v Value)> {
    let mut out = vec![];
    for (key, value) in map {
        match key.as_str() {
            Some(key) => out.push((key, value)),
            None => rep.error(field, format!("key {} is not a string", fields::show(key))),
        }
    }
    out
}

fn source_of(rep: &mut Reporter<'_>, map: &Mapping, field: &str) -> Source {
    let mut source = Source::default();
    for (key, value) in keyed(rep, map, field) {
        let at = format!("{field}.{key}");
        match key {
            "principals" => source.principals = strings(rep, value, &at),
            "notPrincipals" => source.not_principals = strings(rep, value, &at),
            "namespaces" => source.namespaces = namespace_patterns(rep, value, &at),
            "notNamespaces" => source.not_namespaces = namespace_patterns(rep, value, &at),
            "serviceAccounts" => source.service_accounts = strings(rep, value, &at),
            "notServiceAccounts" => source.not_service_accounts = strings(rep, value, &at),
            "ipBlocks" => source.ip_blocks = blocks(rep, value, &at),
            "notIpBlocks" => source.not_ip_blocks = blocks(rep, value, &at),
            "requestPrincipals" => source.request_principals = strings(rep, value, &at),
            "notRequestPrincipals" => source.not_request_principals = strings(rep, value, &at),
            "remoteIpBlocks" => source.remote_ip_blocks = blocks(rep, value, &at),
            "notRemoteIpBlocks" => source.not_remote_ip_blocks = blocks(rep, value, &at),
            other => source.unknown.push(other.to_string()),
        }
    }
    source
}

/// Namespace names or patterns, each within the regex budget as the
/// principal regex it becomes.
fn namespace_patterns(rep: &mut Reporter<'_>, value: &Value, field: &str) -> Vec<String> {
    let patterns = strings(rep, value, field);
    for (i, ns) in patterns.iter().enumerate() {
        let re = crate::model::authz::namespace_principal_regex(ns);
        if let Err(mesh_regex::RegexError::TooBig { limit, .. }) = super::regex_budget::check(&re) {
            rep.error(
                format!("{field}[{i}]"),
                format!(
                    "{ns:?} is over the regex program-size budget as a principal regex \
                     ({limit} bytes compiled, the equivalent of Istio's limit of {} RE2 \
                     instructions): use fewer wildcards",
                    mesh_regex::ISTIO_MAX_PROGRAM_SIZE
                ),
            );
        }
    }
    patterns
}

fn operation_of(rep: &mut Reporter<'_>, map: &Mapping, field: &str) -> Operation {
    let mut op = Operation::default();
    for (key, value) in keyed(rep, map, field) {
        let at = format!("{field}.{key}");
        match key {
            "ports" => op.ports = ports(rep, value, &at),
            "notPorts" => op.not_ports = ports(rep, value, &at),
            "hosts" => op.hosts = strings(rep, value, &at),
            "notHosts" => op.not_hosts = strings(rep, value, &at),
            "methods" => op.methods = strings(rep, value, &at),
            "notMethods" => op.not_methods = strings(rep, value, &at),
            "paths" => op.paths = strings(rep, value, &at),
            "notPaths" => op.not_paths = strings(rep, value, &at),
            other => op.unknown.push(other.to_string()),
        }
    }
    op
}

fn condition(rep: &mut Reporter<'_>, entry: &Value, field: &str) -> Option<Condition> {
    let Some(map) = entry.as_mapping() else {
        rep.error(
            field,
            format!("expected a mapping, found {}", fields::type_name(entry)),
        );
        return None;
    };
    let key = match map.get("key") {
        None | Some(Value::Null) => {
            rep.error(format!("{field}.key"), "required field is missing");
            return None;
        }
        Some(Value::String(k)) if k.is_empty() => {
            rep.error(format!("{field}.key"), "must not be empty");
            return None;
        }
        Some(Value::String(k)) => k.clone(),
        Some(other) => {
            rep.error(
                format!("{field}.key"),
                format!("expected a string, found {}", fields::show(other)),
            );
            return None;
        }
    };
    let list = |rep: &mut Reporter<'_>, name: &str| -> &[Value] {
        match map.get(name) {
            None | Some(Value::Null) => &[],
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                rep.error(
                    format!("{field}.{name}"),
                    format!("expected a list, found {}", fields::type_name(other)),
                );
                &[]
            }
        }
    };
    let values = list(rep, "values");
    let not_values = list(rep, "notValues");
    if values.is_empty() && not_values.is_empty() {
        rep.error(
            field,
            format!("condition on {key:?} needs values or notValues"),
        );
        return None;
    }
    let at = |name: &str| format!("{field}.{name}");
    if L4_KEYS.contains(&key.as_str()) {
        let parse = |rep: &mut Reporter<'_>, items: &[Value], at: &str| {
            l4_values(rep, &key, &Value::Sequence(items.to_vec()), at)
        };
        let values = parse(rep, values, &at("values"));
        let not_values = parse(rep, not_values, &at("notValues"));
        return Some(Condition::L4 {
            key,
            values,
            not_values,
        });
    }
    let known_l7 = L7_KEYS.contains(&key.as_str())
        || L7_PREFIXES
            .iter()
            .any(|p| key.starts_with(p) && (!p.ends_with('[') || key.ends_with(']')));
    if !known_l7 {
        rep.error(
            at("key"),
            format!("{key:?} is not an attribute Istio knows (L4: {}; L7: {}, request.headers[<name>], request.auth.claims[<name>], experimental.envoy.filters.*)",
                L4_KEYS.join(", "), L7_KEYS.join(", ")),
        );
        return None;
    }
    // Istio checks remote.ip values like source.ip ones.
    if key == "remote.ip" {
        blocks(rep, &Value::Sequence(values.to_vec()), &at("values"));
        blocks(rep, &Value::Sequence(not_values.to_vec()), &at("notValues"));
    }
    let values = strings(rep, &Value::Sequence(values.to_vec()), &at("values"));
    let not_values = strings(rep, &Value::Sequence(not_values.to_vec()), &at("notValues"));
    Some(Condition::L7 {
        key,
        values,
        not_values,
    })
}

fn l4_values(rep: &mut Reporter<'_>, key: &str, items: &Value, field: &str) -> L4Values {
    match key {
        "source.ip" => L4Values::SourceIp(blocks(rep, items, field)),
        "destination.ip" => L4Values::DestinationIp(blocks(rep, items, field)),
        "destination.port" => L4Values::DestinationPort(ports(rep, items, field)),
        "source.namespace" => L4Values::SourceNamespace(strings(rep, items, field)),
        // `source.serviceAccount` (`ns/sa`) is checked against the peer's
        // principal by `translate::authorization`; kept as written here.
        _ => L4Values::SourcePrincipal(strings(rep, items, field)),
    }
}

#[cfg(test)]
mod tests;
