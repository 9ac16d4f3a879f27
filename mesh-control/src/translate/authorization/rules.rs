//! One AuthorizationPolicy rule → one `Rule{clauses}` (clauses AND-ed,
//! matches inside a clause OR-ed): clause 1 is `from` (a Match per
//! source), clause 2 is `to` (a Match per operation), then a clause per L4
//! `when` condition. Values of one field are OR-ed, fields of a Match AND-ed,
//! as in Istio.
//!
//! L7 attributes cannot be evaluated by an L4 agent. Like istiod for
//! ztunnel, we fail safe: an ALLOW rule with any L7 attribute is dropped
//! (what it would allow is denied), a DENY or AUDIT rule keeps its L4 part
//! and ignores the L7 one (it denies more). Either way a finding names the
//! fields.
use mesh_xds::proto::istio_security::{
    string_match::MatchType, Address, Clause, Match, Rule, StringMatch,
};

use crate::{
    analyze::{codes, Finding, Severity},
    model::{
        authz::{AuthzAction, AuthzRule, Condition, IpBlock, L4Values, Operation, Source},
        AuthorizationPolicy,
    },
};

/// Rule `index` of `policy`, or `None` when fail-safe handling drops it.
pub(super) fn translate(
    policy: &AuthorizationPolicy,
    index: usize,
    rule: &AuthzRule,
    findings: &mut Vec<Finding>,
) -> Option<Rule> {
    let at = format!("spec.rules[{index}]");
    let l7 = l7_fields(rule, &at);
    if let Some((first, _)) = l7.first() {
        let allow = policy.action == AuthzAction::Allow;
        let listed = l7
            .iter()
            .map(|(_, shown)| shown.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let (code, message, suggestion) = if allow {
            (
                codes::AUTHZ_L7_ALLOW_DROPPED,
                format!("L7 attributes ({listed}) cannot be checked by the node agents (L4); this ALLOW rule is dropped, so what it allows is denied"),
                "move the L7 conditions to a waypoint policy (targetRefs), or allow by principal/namespace/port only",
            )
        } else {
            (
                codes::AUTHZ_L7_IGNORED,
                format!("L7 attributes ({listed}) cannot be checked by the node agents (L4); they are ignored, so this {} rule applies to every request matching the rest", policy.action.as_str()),
                "narrow the rule with L4 attributes (principals, namespaces, ipBlocks, ports), or move it to a waypoint policy",
            )
        };
        findings.push(Finding {
            severity: Severity::Warning,
            code,
            resource: policy.resource(),
            file: Some(policy.file.clone()),
            field: Some(first.clone()),
            message,
            suggestion: suggestion.to_string(),
        });
        if allow {
            return None;
        }
    }
    let mut clauses = vec![];
    if let Some(sources) = &rule.from {
        clauses.push(Clause {
            matches: sources
                .iter()
                .map(|s| source_match(s, &policy.namespace))
                .collect(),
        });
    }
    if let Some(operations) = &rule.to {
        clauses.push(Clause {
            matches: operations.iter().map(operation_match).collect(),
        });
    }
    for condition in &rule.when {
        if let Condition::L4 {
            key,
            values,
            not_values,
        } = condition
        {
            let mut m = Match::default();
            fill(&mut m, key, values, false, &policy.namespace);
            fill(&mut m, key, not_values, true, &policy.namespace);
            clauses.push(Clause { matches: vec![m] });
        }
    }
    Some(Rule { clauses })
}

/// Every L7 attribute in `rule`: its path
/// (`spec.rules[0].to[1].operation.paths`) and how to show it in a message
/// (the path, plus the key for a `when` condition).
pub(crate) fn l7_fields(rule: &AuthzRule, at: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for (i, source) in rule.from.iter().flatten().enumerate() {
        let field = |name: &str| format!("{at}.from[{i}].source.{name}");
        for (name, set) in [
            ("requestPrincipals", !source.request_principals.is_empty()),
            (
                "notRequestPrincipals",
                !source.not_request_principals.is_empty(),
            ),
            ("remoteIpBlocks", !source.remote_ip_blocks.is_empty()),
            ("notRemoteIpBlocks", !source.not_remote_ip_blocks.is_empty()),
            (
                // An AND of principals and serviceAccounts has no single
                // Match form; see `source_match`.
                "serviceAccounts",
                !source.service_accounts.is_empty() && !source.principals.is_empty(),
            ),
        ] {
            if set {
                out.push(field(name));
            }
        }
        out.extend(source.unknown.iter().map(|name| field(name)));
    }
    for (i, op) in rule.to.iter().flatten().enumerate() {
        let field = |name: &str| format!("{at}.to[{i}].operation.{name}");
        for (name, values) in [
            ("hosts", &op.hosts),
            ("notHosts", &op.not_hosts),
            ("methods", &op.methods),
            ("notMethods", &op.not_methods),
            ("paths", &op.paths),
            ("notPaths", &op.not_paths),
        ] {
            if !values.is_empty() {
                out.push(field(name));
            }
        }
        out.extend(op.unknown.iter().map(|name| field(name)));
    }
    let mut out: Vec<(String, String)> = out.into_iter().map(|f| (f.clone(), f)).collect();
    for (i, condition) in rule.when.iter().enumerate() {
        if let Condition::L7 { key, .. } = condition {
            let field = format!("{at}.when[{i}].key");
            out.push((field.clone(), format!("{field} {key:?}")));
        }
    }
    out
}

fn source_match(source: &Source, namespace: &str) -> Match {
    let mut principals = strings(&source.principals, true);
    let mut not_principals = strings(&source.not_principals, true);
    // serviceAccounts is another spelling of principals, minus the trust
    // domain. With principals also set the two would have to be AND-ed,
    // which one Match cannot say: then it is treated as L7 (`l7_fields`).
    if source.principals.is_empty() {
        principals.extend(
            source
                .service_accounts
                .iter()
                .map(|sa| service_account(sa, namespace)),
        );
    }
    // A "not" list is a NOR, so merging two of them is exact.
    not_principals.extend(
        source
            .not_service_accounts
            .iter()
            .map(|sa| service_account(sa, namespace)),
    );
    Match {
        namespaces: strings(&source.namespaces, false),
        not_namespaces: strings(&source.not_namespaces, false),
        principals,
        not_principals,
        source_ips: addresses(&source.ip_blocks),
        not_source_ips: addresses(&source.not_ip_blocks),
        ..Match::default()
    }
}

fn operation_match(op: &Operation) -> Match {
    Match {
        destination_ports: op.ports.iter().map(|p| u32::from(*p)).collect(),
        not_destination_ports: op.not_ports.iter().map(|p| u32::from(*p)).collect(),
        ..Match::default()
    }
}

/// Adds one `when` condition's values (or notValues) to `m`.
fn fill(m: &mut Match, key: &str, values: &L4Values, negate: bool, namespace: &str) {
    macro_rules! pick {
        ($pos:ident, $neg:ident) => {
            if negate {
                &mut m.$neg
            } else {
                &mut m.$pos
            }
        };
    }
    match values {
        L4Values::SourceIp(blocks) => pick!(source_ips, not_source_ips).extend(addresses(blocks)),
        L4Values::DestinationIp(blocks) => {
            pick!(destination_ips, not_destination_ips).extend(addresses(blocks))
        }
        L4Values::DestinationPort(ports) => pick!(destination_ports, not_destination_ports)
            .extend(ports.iter().map(|p| u32::from(*p))),
        L4Values::SourceNamespace(names) => {
            pick!(namespaces, not_namespaces).extend(strings(names, false))
        }
        L4Values::SourcePrincipal(names) if key == "source.serviceAccount" => {
            pick!(principals, not_principals)
                .extend(names.iter().map(|sa| service_account(sa, namespace)))
        }
        L4Values::SourcePrincipal(names) => {
            pick!(principals, not_principals).extend(strings(names, true))
        }
    }
}

/// `ns/sa` (or `sa`, in the policy's namespace) → a match on any trust
/// domain's principal for that account.
fn service_account(sa: &str, namespace: &str) -> StringMatch {
    let (ns, name) = sa.split_once('/').unwrap_or((namespace, sa));
    StringMatch {
        match_type: Some(MatchType::Suffix(format!("/ns/{ns}/sa/{name}"))),
    }
}

fn strings(values: &[String], principal: bool) -> Vec<StringMatch> {
    values
        .iter()
        .map(|v| {
            let v = if principal {
                v.strip_prefix("spiffe://").unwrap_or(v)
            } else {
                v.as_str()
            };
            string_match(v)
        })
        .collect()
}

/// Istio's wildcard forms: `*` any (non-empty) value, `x*` prefix, `*x`
/// suffix; anything else, including a `*` in the middle, is exact.
pub(crate) fn string_match(value: &str) -> StringMatch {
    let match_type = if value == "*" {
        MatchType::Presence(mesh_xds::proto::wkt::Empty {})
    } else if let Some(suffix) = value.strip_prefix('*') {
        MatchType::Suffix(suffix.to_string())
    } else if let Some(prefix) = value.strip_suffix('*') {
        MatchType::Prefix(prefix.to_string())
    } else {
        MatchType::Exact(value.to_string())
    };
    StringMatch {
        match_type: Some(match_type),
    }
}

fn addresses(blocks: &[IpBlock]) -> Vec<Address> {
    blocks
        .iter()
        .map(|b| Address {
            address: match b.address {
                std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
            },
            length: u32::from(b.prefix_len),
        })
        .collect()
}
