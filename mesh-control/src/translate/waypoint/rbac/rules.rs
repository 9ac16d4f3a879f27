//! One AuthorizationPolicy → Envoy RBAC `Policy`s, one per rule, named as
//! istiod names them (`ns[<ns>]-policy[<name>]-rule[<i>]`). `from`
//! sources become principals (`principals` → `authenticated.principal_name`
//! exact `spiffe://…`, `namespaces` → principal regex
//! `spiffe://[^/]+/ns/<ns>/sa/.*`, `ipBlocks` → `direct_remote_ip`,
//! `remoteIpBlocks` → `remote_ip`), `to` operations become permissions
//! (`paths` → `url_path` exact / prefix `/x/*` / suffix `*.ext`, `methods`
//! → `:method`, `hosts` → `:authority`, `ports` → `destination_port`),
//! `when` conditions whichever they name; every `notX` is a `not_id` /
//! `not_rule`. Values of one field are OR-ed, fields AND-ed.
//!
//! What a waypoint cannot check (JWT `requestPrincipals` and
//! `request.auth.*`, unknown fields) fails safe, as for the agents: an
//! ALLOW rule with one is dropped, a DENY/AUDIT rule ignores it.
use envoy_types::pb::envoy::{
    config::{
        core::v3::CidrRange,
        rbac::v3::{
            permission::{self, Rule},
            principal::{self, Authenticated, Identifier},
            Permission, Policy, Principal,
        },
        route::v3::{header_matcher::HeaderMatchSpecifier, HeaderMatcher},
    },
    r#type::matcher::v3::{path_matcher, string_matcher::MatchPattern, PathMatcher, StringMatcher},
};

use super::{super::route_match::regex, Kind};
use crate::model::{
    authz::{AuthzRule, Condition, IpBlock, L4Values, Operation, Source},
    AuthorizationPolicy,
};

/// The named Envoy policies of `p` (rules dropped by fail-safe handling
/// are left out).
pub fn policies(p: &AuthorizationPolicy, kind: Kind, trust_domain: &str) -> Vec<(String, Policy)> {
    p.rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| {
            let name = format!("ns[{}]-policy[{}]-rule[{i}]", p.namespace, p.name);
            let mut cx = RuleCx {
                namespace: &p.namespace,
                trust_domain,
                unsupported: vec![],
            };
            let policy = cx.policy(rule);
            if !cx.unsupported.is_empty() {
                tracing::debug!(policy = %p.resource(), rule = i, fields = ?cx.unsupported, "attributes a waypoint cannot check");
                if kind == Kind::Allow {
                    return None;
                }
            }
            Some((name, policy))
        })
        .collect()
}

struct RuleCx<'a> {
    namespace: &'a str,
    trust_domain: &'a str,
    unsupported: Vec<String>,
}

fn any_id() -> Principal {
    Principal {
        identifier: Some(Identifier::Any(true)),
    }
}

fn any_rule() -> Permission {
    Permission {
        rule: Some(Rule::Any(true)),
    }
}

fn id(i: Identifier) -> Principal {
    Principal {
        identifier: Some(i),
    }
}

fn rule(r: Rule) -> Permission {
    Permission { rule: Some(r) }
}

fn or_ids(ids: Vec<Principal>) -> Principal {
    id(Identifier::OrIds(principal::Set { ids }))
}

fn and_ids(mut ids: Vec<Principal>) -> Principal {
    match ids.len() {
        0 => any_id(),
        1 => ids.remove(0),
        _ => id(Identifier::AndIds(principal::Set { ids })),
    }
}

fn not_id(p: Principal) -> Principal {
    id(Identifier::NotId(Box::new(p)))
}

fn or_rules(rules: Vec<Permission>) -> Permission {
    rule(Rule::OrRules(permission::Set { rules }))
}

fn and_rules(mut rules: Vec<Permission>) -> Permission {
    match rules.len() {
        0 => any_rule(),
        1 => rules.remove(0),
        _ => rule(Rule::AndRules(permission::Set { rules })),
    }
}

fn not_rule(p: Permission) -> Permission {
    rule(Rule::NotRule(Box::new(p)))
}

fn matcher(pattern: MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    }
}

/// Istio's value wildcards: `*` alone, `prefix*`, `*suffix`, else exact;
/// `None` for `*` (anything).
fn wildcard(value: &str, ignore_case: bool) -> Option<StringMatcher> {
    let pattern = if value == "*" {
        return None;
    } else if let Some(prefix) = value.strip_suffix('*') {
        MatchPattern::Prefix(prefix.to_string())
    } else if let Some(suffix) = value.strip_prefix('*') {
        MatchPattern::Suffix(suffix.to_string())
    } else {
        MatchPattern::Exact(value.to_string())
    };
    Some(matcher(pattern, ignore_case))
}

/// A header condition with Istio's wildcards (`*`: present).
fn header(name: &str, value: &str, ignore_case: bool) -> HeaderMatcher {
    let spec = match wildcard(value, ignore_case) {
        Some(sm) => HeaderMatchSpecifier::StringMatch(sm),
        None => HeaderMatchSpecifier::PresentMatch(true),
    };
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

fn cidr(b: &IpBlock) -> CidrRange {
    CidrRange {
        address_prefix: b.address.to_string(),
        prefix_len: Some(super::super::pb::u32v(u32::from(b.prefix_len))),
    }
}

impl RuleCx<'_> {
    fn policy(&mut self, r: &AuthzRule) -> Policy {
        let mut ids = vec![];
        let mut perms = vec![];
        if let Some(sources) = &r.from {
            ids.push(or_ids(sources.iter().map(|s| self.source(s)).collect()));
        }
        if let Some(ops) = &r.to {
            perms.push(or_rules(ops.iter().map(|o| self.operation(o)).collect()));
        }
        for c in &r.when {
            self.condition(c, &mut ids, &mut perms);
        }
        Policy {
            permissions: vec![and_rules(perms)],
            principals: vec![and_ids(ids)],
            ..Default::default()
        }
    }

    /// `cluster.local/ns/a/sa/b` → authenticated `spiffe://cluster.local/ns/a/sa/b`.
    fn principal(&self, value: &str) -> Principal {
        let name = if value == "*" {
            Some(matcher(MatchPattern::Prefix("spiffe://".into()), false))
        } else if let Some(suffix) = value.strip_prefix('*') {
            Some(matcher(MatchPattern::Suffix(suffix.to_string()), false))
        } else {
            let full = if value.starts_with("spiffe://") {
                value.to_string()
            } else {
                format!("spiffe://{value}")
            };
            wildcard(&full, false)
        };
        id(Identifier::Authenticated(Authenticated {
            principal_name: name,
        }))
    }

    /// Principals of namespace `ns` (Istio's `*` wildcards allowed).
    fn namespace(&self, ns: &str) -> Principal {
        let re = crate::model::authz::namespace_principal_regex(ns);
        id(Identifier::Authenticated(Authenticated {
            principal_name: Some(matcher(MatchPattern::SafeRegex(regex(&re)), false)),
        }))
    }

    /// `ns/sa` or `sa` (in the policy's namespace) → its principal.
    fn service_account(&self, sa: &str) -> Principal {
        let (ns, name) = sa.split_once('/').unwrap_or((self.namespace, sa));
        self.principal(&format!("{}/ns/{ns}/sa/{name}", self.trust_domain))
    }

    fn source(&mut self, s: &Source) -> Principal {
        let mut ids = vec![];
        let mut field = |values: &[String], f: &dyn Fn(&str) -> Principal, negate: bool| {
            if values.is_empty() {
                return;
            }
            let any = or_ids(values.iter().map(|v| f(v)).collect());
            ids.push(if negate { not_id(any) } else { any });
        };
        field(&s.principals, &|v| self.principal(v), false);
        field(&s.not_principals, &|v| self.principal(v), true);
        field(&s.namespaces, &|v| self.namespace(v), false);
        field(&s.not_namespaces, &|v| self.namespace(v), true);
        field(&s.service_accounts, &|v| self.service_account(v), false);
        field(&s.not_service_accounts, &|v| self.service_account(v), true);
        let blocks = |list: &[IpBlock], remote: bool| {
            or_ids(
                list.iter()
                    .map(|b| {
                        id(if remote {
                            Identifier::RemoteIp(cidr(b))
                        } else {
                            Identifier::DirectRemoteIp(cidr(b))
                        })
                    })
                    .collect(),
            )
        };
        for (list, remote, negate) in [
            (&s.ip_blocks, false, false),
            (&s.not_ip_blocks, false, true),
            (&s.remote_ip_blocks, true, false),
            (&s.not_remote_ip_blocks, true, true),
        ] {
            if !list.is_empty() {
                let p = blocks(list, remote);
                ids.push(if negate { not_id(p) } else { p });
            }
        }
        if !s.request_principals.is_empty() {
            self.unsupported.push("source.requestPrincipals".into());
        }
        if !s.not_request_principals.is_empty() {
            self.unsupported.push("source.notRequestPrincipals".into());
        }
        self.unsupported
            .extend(s.unknown.iter().map(|f| format!("source.{f}")));
        and_ids(ids)
    }

    fn operation(&mut self, o: &Operation) -> Permission {
        let mut rules = vec![];
        let mut field = |values: &[String], f: &dyn Fn(&str) -> Permission, negate: bool| {
            if values.is_empty() {
                return;
            }
            let any = or_rules(values.iter().map(|v| f(v)).collect());
            rules.push(if negate { not_rule(any) } else { any });
        };
        let host = |v: &str| rule(Rule::Header(header(":authority", v, true)));
        let method = |v: &str| rule(Rule::Header(header(":method", v, false)));
        let path = |v: &str| {
            let sm = wildcard(v, false)
                .unwrap_or_else(|| matcher(MatchPattern::Prefix("/".into()), false));
            rule(Rule::UrlPath(PathMatcher {
                rule: Some(path_matcher::Rule::Path(sm)),
            }))
        };
        field(&o.hosts, &host, false);
        field(&o.not_hosts, &host, true);
        field(&o.methods, &method, false);
        field(&o.not_methods, &method, true);
        field(&o.paths, &path, false);
        field(&o.not_paths, &path, true);
        let port = |p: &u16| rule(Rule::DestinationPort(u32::from(*p)));
        if !o.ports.is_empty() {
            rules.push(or_rules(o.ports.iter().map(port).collect()));
        }
        if !o.not_ports.is_empty() {
            rules.push(not_rule(or_rules(o.not_ports.iter().map(port).collect())));
        }
        self.unsupported
            .extend(o.unknown.iter().map(|f| format!("operation.{f}")));
        and_rules(rules)
    }

    fn condition(&mut self, c: &Condition, ids: &mut Vec<Principal>, perms: &mut Vec<Permission>) {
        match c {
            Condition::L4 {
                key,
                values,
                not_values,
            } => {
                for (v, negate) in [(values, false), (not_values, true)] {
                    self.l4(key, v, negate, ids, perms);
                }
            }
            Condition::L7 {
                key,
                values,
                not_values,
            } => {
                let header_name = key
                    .strip_prefix("request.headers[")
                    .and_then(|k| k.strip_suffix(']'));
                for (v, negate) in [(values, false), (not_values, true)] {
                    if v.is_empty() {
                        continue;
                    }
                    if let Some(name) = header_name.map(str::to_ascii_lowercase) {
                        let p = or_ids(
                            v.iter()
                                .map(|v| id(Identifier::Header(header(&name, v, false))))
                                .collect(),
                        );
                        ids.push(if negate { not_id(p) } else { p });
                    } else if key == "connection.sni" {
                        let p = or_rules(
                            v.iter()
                                .map(|v| {
                                    rule(Rule::RequestedServerName(
                                        wildcard(v, false).unwrap_or_else(|| {
                                            matcher(MatchPattern::SafeRegex(regex(".*")), false)
                                        }),
                                    ))
                                })
                                .collect(),
                        );
                        perms.push(if negate { not_rule(p) } else { p });
                    } else if key == "remote.ip" {
                        let blocks: Vec<IpBlock> = v
                            .iter()
                            .filter_map(|s| crate::source::parse_block(s).ok())
                            .collect();
                        let p = or_ids(
                            blocks
                                .iter()
                                .map(|b| id(Identifier::RemoteIp(cidr(b))))
                                .collect(),
                        );
                        ids.push(if negate { not_id(p) } else { p });
                    } else {
                        self.unsupported.push(format!("when {key}"));
                    }
                }
            }
        }
    }

    fn l4(
        &mut self,
        key: &str,
        values: &L4Values,
        negate: bool,
        ids: &mut Vec<Principal>,
        perms: &mut Vec<Permission>,
    ) {
        let wrap_id = |p: Principal| if negate { not_id(p) } else { p };
        let wrap_rule = |p: Permission| if negate { not_rule(p) } else { p };
        match values {
            L4Values::SourceIp(b) if !b.is_empty() => ids.push(wrap_id(or_ids(
                b.iter()
                    .map(|b| id(Identifier::DirectRemoteIp(cidr(b))))
                    .collect(),
            ))),
            L4Values::SourceNamespace(n) if !n.is_empty() => ids.push(wrap_id(or_ids(
                n.iter().map(|n| self.namespace(n)).collect(),
            ))),
            L4Values::SourcePrincipal(p) if !p.is_empty() => {
                let f = |v: &String| {
                    if key == "source.serviceAccount" {
                        self.service_account(v)
                    } else {
                        self.principal(v)
                    }
                };
                ids.push(wrap_id(or_ids(p.iter().map(f).collect())));
            }
            L4Values::DestinationIp(b) if !b.is_empty() => perms.push(wrap_rule(or_rules(
                b.iter()
                    .map(|b| rule(Rule::DestinationIp(cidr(b))))
                    .collect(),
            ))),
            L4Values::DestinationPort(ports) if !ports.is_empty() => {
                perms.push(wrap_rule(or_rules(
                    ports
                        .iter()
                        .map(|p| rule(Rule::DestinationPort(u32::from(*p))))
                        .collect(),
                )))
            }
            _ => {}
        }
    }
}
