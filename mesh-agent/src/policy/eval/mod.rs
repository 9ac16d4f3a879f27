//! Evaluating Istio workload authorization (`istio.security.Authorization`)
//! for one connection, in Istio's order: DENY policies first (any match
//! denies), then ALLOW (when at least one ALLOW policy applies, one must
//! match). AUDIT policies are matched and reported, never enforced; dry-run
//! policies report what they would have done.
//!
//! Matching follows ztunnel: a policy's rules are OR-ed, a rule's clauses
//! AND-ed, a clause's matches OR-ed, and within one match every set field
//! must hold (an empty field matches anything). A connection without a peer
//! identity (plaintext) fails every positive `principals`/`namespaces`/
//! `service_accounts` match and satisfies every negative one, as in
//! Envoy's RBAC. `service_accounts` compares the peer's namespace and
//! service account exactly, in any trust domain (ztunnel's
//! `ServiceAccountMatch`).
//!
//! A condition this agent cannot evaluate — an `extensions` entry on the
//! match or the policy (also the markers `mesh_xds::unknown_fields` leaves
//! for fields this build does not declare), a string match of no known
//! form — is AND-ed with the match's other conditions as *unknown*, in
//! Kleene logic as the waypoint's RBAC does (decision 27): a known
//! condition that fails still rules the match out; otherwise the match is
//! unknown, and an ALLOW policy needs a sure match,
//! a DENY (or a policy of an unknown action) applies unless it surely does
//! not match. Either way the policy fails closed.
use std::net::IpAddr;

use mesh_admin::kleene::{all, any};
use mesh_hbone::Identity;
use mesh_xds::proto::istio_security::{
    string_match::MatchType, Action, Address, Authorization, Match, ServiceAccountMatch,
    StringMatch,
};

/// The L4 facts of a connection that policies look at.
#[derive(Debug, Clone, Copy)]
pub struct Conn<'a> {
    /// The source pod's address, when known (same node, or `forwarded` on
    /// HBONE from the source's agent).
    pub src_ip: Option<IpAddr>,
    /// The peer's verified SPIFFE identity; `None` for plaintext.
    pub src: Option<&'a Identity>,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
}

/// What a policy set decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// `policy` is `<namespace>/<name>`, or the reason no ALLOW matched.
    Deny {
        policy: String,
    },
}

/// The verdict plus what was only observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// AUDIT policies that matched.
    pub audited: Vec<String>,
    /// Dry-run policies whose verdict would have been a denial.
    pub dry_run_denials: Vec<String>,
}

/// Name of the verdict when ALLOW policies exist and none matched.
pub const NO_ALLOW_MATCHED: &str = "no ALLOW policy matched";

pub fn policy_name(p: &Authorization) -> String {
    format!("{}/{}", p.namespace, p.name)
}

fn action(p: &Authorization) -> Option<Action> {
    Action::try_from(p.action).ok()
}

/// Evaluates `policies` (those that apply to the destination workload).
pub fn evaluate<'p>(
    policies: impl IntoIterator<Item = &'p Authorization> + Clone,
    conn: &Conn<'_>,
) -> Evaluation {
    let mut audited = Vec::new();
    let mut dry_run_denials = Vec::new();
    let mut deny = None;
    let mut allow_exists = false;
    let mut allow_matched = false;
    let mut dry_allow_exists = false;
    let mut dry_allow_matched = false;
    let subject = Subject::of(conn);
    for p in policies {
        let outcome = matches_with(p, conn, &subject);
        // Fail closed: an ALLOW counts only a sure match, everything else
        // (DENY, AUDIT, unknown actions) counts a possible one.
        let matched = if action(p) == Some(Action::Allow) {
            outcome == Some(true)
        } else {
            outcome != Some(false)
        };
        match (action(p), p.dry_run) {
            (Some(Action::Deny), false) => {
                if matched && deny.is_none() {
                    deny = Some(policy_name(p));
                }
            }
            (Some(Action::Deny), true) => {
                if matched {
                    dry_run_denials.push(policy_name(p));
                }
            }
            (Some(Action::Allow), false) => {
                allow_exists = true;
                allow_matched |= matched;
            }
            (Some(Action::Allow), true) => {
                dry_allow_exists = true;
                dry_allow_matched |= matched;
            }
            (Some(Action::Audit), _) => {
                if matched {
                    audited.push(policy_name(p));
                }
            }
            // An action this agent does not know: fail closed, as a DENY.
            (None, _) => {
                if matched && deny.is_none() {
                    deny = Some(policy_name(p));
                }
            }
        }
    }
    if dry_allow_exists && !dry_allow_matched {
        dry_run_denials.push(NO_ALLOW_MATCHED.to_string());
    }
    let verdict = match deny {
        Some(policy) => Verdict::Deny { policy },
        None if allow_exists && !allow_matched => Verdict::Deny {
            policy: NO_ALLOW_MATCHED.to_string(),
        },
        None => Verdict::Allow,
    };
    Evaluation {
        verdict,
        audited,
        dry_run_denials,
    }
}

/// The source's principal, namespace and service account, formatted once
/// per evaluation (not once per match: a 100-rule policy would format 100
/// times).
struct Subject<'a> {
    principal: Option<String>,
    namespace: Option<&'a str>,
    service_account: Option<&'a str>,
}

impl<'a> Subject<'a> {
    fn of(conn: &Conn<'a>) -> Self {
        Subject {
            principal: conn.src.map(principal),
            namespace: conn.src.map(Identity::namespace),
            service_account: conn.src.map(Identity::service_account),
        }
    }
}

/// Whether `p`'s rules match `conn`: `Some(true)` surely, `Some(false)`
/// surely not, `None` when it depends on a condition this agent cannot
/// evaluate (Kleene logic over rules, clauses and matches).
pub fn policy_match(p: &Authorization, conn: &Conn<'_>) -> Option<bool> {
    matches_with(p, conn, &Subject::of(conn))
}

/// Whether `p` applies to `conn` as its action is enforced, failing
/// closed: an ALLOW needs a sure match; a DENY, an AUDIT or an unknown
/// action applies unless it surely does not match.
pub fn policy_matches(p: &Authorization, conn: &Conn<'_>) -> bool {
    let outcome = policy_match(p, conn);
    if action(p) == Some(Action::Allow) {
        outcome == Some(true)
    } else {
        outcome != Some(false)
    }
}

fn matches_with(p: &Authorization, conn: &Conn<'_>, subject: &Subject<'_>) -> Option<bool> {
    let policy_known = p.extensions.is_empty();
    any(p.rules.iter().map(|rule| {
        all(rule.clauses.iter().map(|clause| {
            any(clause.matches.iter().map(|m| {
                let known = policy_known && match_known(m);
                all([Some(match_holds(m, conn, subject)), known.then_some(true)])
            }))
        }))
    }))
}

/// Whether every condition of `m` is one this agent evaluates: no
/// extension (it knows none) and every string match of a known form.
pub fn match_known(m: &Match) -> bool {
    m.extensions.is_empty()
        && [
            &m.principals,
            &m.not_principals,
            &m.namespaces,
            &m.not_namespaces,
        ]
        .iter()
        .all(|list| list.iter().all(|s| s.match_type.is_some()))
}

/// `principal` as policies write it: the SPIFFE id without `spiffe://`.
pub fn principal(id: &Identity) -> String {
    format!(
        "{}/ns/{}/sa/{}",
        id.trust_domain(),
        id.namespace(),
        id.service_account()
    )
}

fn match_holds(m: &Match, conn: &Conn<'_>, subject: &Subject<'_>) -> bool {
    let principal = subject.principal.as_deref();
    let namespace = subject.namespace;
    positive_str(&m.principals, principal)
        && negative_str(&m.not_principals, principal)
        && positive_str(&m.namespaces, namespace)
        && negative_str(&m.not_namespaces, namespace)
        && positive_ip(&m.source_ips, conn.src_ip)
        && negative_ip(&m.not_source_ips, conn.src_ip)
        && positive_ip(&m.destination_ips, Some(conn.dst_ip))
        && negative_ip(&m.not_destination_ips, Some(conn.dst_ip))
        && positive_sa(&m.service_accounts, subject)
        && negative_sa(&m.not_service_accounts, subject)
        && (m.destination_ports.is_empty()
            || m.destination_ports.contains(&u32::from(conn.dst_port)))
        && !m.not_destination_ports.contains(&u32::from(conn.dst_port))
}

fn string_matches(s: &StringMatch, value: &str) -> bool {
    match &s.match_type {
        Some(MatchType::Exact(e)) => value == e,
        Some(MatchType::Prefix(p)) => value.starts_with(p.as_str()),
        Some(MatchType::Suffix(x)) => value.ends_with(x.as_str()),
        Some(MatchType::Presence(_)) => !value.is_empty(),
        None => false,
    }
}

fn sa_matches(sa: &ServiceAccountMatch, subject: &Subject<'_>) -> bool {
    subject.namespace == Some(sa.namespace.as_str())
        && subject.service_account == Some(sa.service_account.as_str())
}

/// An empty list matches anything; a source without identity matches no
/// entry.
fn positive_sa(list: &[ServiceAccountMatch], subject: &Subject<'_>) -> bool {
    list.is_empty() || list.iter().any(|sa| sa_matches(sa, subject))
}

fn negative_sa(list: &[ServiceAccountMatch], subject: &Subject<'_>) -> bool {
    !list.iter().any(|sa| sa_matches(sa, subject))
}

fn positive_str(list: &[StringMatch], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|s| string_matches(s, v)))
}

fn negative_str(list: &[StringMatch], value: Option<&str>) -> bool {
    value.is_none_or(|v| !list.iter().any(|s| string_matches(s, v)))
}

/// True when `ip` is inside the CIDR (malformed CIDRs contain nothing).
/// An IPv4 CIDR also contains the IPv4-mapped IPv6 form of its addresses.
pub fn cidr_contains(cidr: &Address, ip: IpAddr) -> bool {
    let (net, width, addr) = match (cidr.address.len(), ip) {
        (4, ip) => {
            let v4 = match ip {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => v4,
                    None => return false,
                },
            };
            let mut net = [0u8; 4];
            net.copy_from_slice(&cidr.address);
            (
                u128::from(u32::from_be_bytes(net)),
                32,
                u128::from(u32::from(v4)),
            )
        }
        (16, ip) => {
            let v6 = match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let mut net = [0u8; 16];
            net.copy_from_slice(&cidr.address);
            (u128::from_be_bytes(net), 128, u128::from(v6))
        }
        _ => return false,
    };
    if cidr.length > width {
        return false;
    }
    let shift = width - cidr.length;
    shift >= width || (net >> shift) == (addr >> shift)
}

fn positive_ip(list: &[Address], ip: Option<IpAddr>) -> bool {
    list.is_empty() || ip.is_some_and(|ip| list.iter().any(|c| cidr_contains(c, ip)))
}

fn negative_ip(list: &[Address], ip: Option<IpAddr>) -> bool {
    ip.is_none_or(|ip| !list.iter().any(|c| cidr_contains(c, ip)))
}

#[cfg(test)]
mod fail_closed_tests;
#[cfg(test)]
pub(crate) mod tests;
