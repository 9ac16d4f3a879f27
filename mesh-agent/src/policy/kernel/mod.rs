//! What of the policies the kernel can enforce by itself.
//!
//! **deny_connect**: at `connect()` the kernel knows the local source pod
//! (netns cookie, hence its address and workload identity) and the
//! destination address and port. A non-dry-run DENY policy whose match,
//! with the source fixed, holds for a destination on every port or on a
//! finite set of ports becomes map entries; a rule that holds on "every port
//! but these" (`notPorts`) cannot be written as entries and stays with the
//! proxy, which enforces every policy anyway. A Service VIP port is denied
//! when every endpoint behind it is denied on its target port.
//!
//! **plaintext**: a mesh pod that no identity-less (plaintext) client may
//! reach, whatever its address or port — STRICT mTLS, or an ALLOW set whose
//! every rule needs a principal or namespace — goes into `strict_pods`, so
//! plaintext from outside the mesh is dropped at the pod's ingress.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use mesh_common::DenyKey;
use mesh_xds::proto::istio_security::{Action, Authorization, Match};

use super::eval::{self, Conn};
use crate::{
    capture::enroll::mapped,
    state::view::{MeshView, WorkloadInfo},
};

/// The ports on which something holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    Only(BTreeSet<u16>),
    AllExcept(BTreeSet<u16>),
}

impl Ports {
    fn none() -> Self {
        Ports::Only(BTreeSet::new())
    }
    fn all() -> Self {
        Ports::AllExcept(BTreeSet::new())
    }
    fn union(self, other: Ports) -> Ports {
        use Ports::*;
        match (self, other) {
            (Only(a), Only(b)) => Only(&a | &b),
            (Only(a), AllExcept(b)) | (AllExcept(b), Only(a)) => AllExcept(&b - &a),
            (AllExcept(a), AllExcept(b)) => AllExcept(&a & &b),
        }
    }
    fn intersect(self, other: Ports) -> Ports {
        use Ports::*;
        match (self, other) {
            (Only(a), Only(b)) => Only(&a & &b),
            (Only(a), AllExcept(b)) | (AllExcept(b), Only(a)) => Only(&a - &b),
            (AllExcept(a), AllExcept(b)) => AllExcept(&a | &b),
        }
    }
}

fn port_list(ports: &[u32]) -> BTreeSet<u16> {
    ports
        .iter()
        .filter_map(|p| u16::try_from(*p).ok())
        .collect()
}

/// Where a match of DENY policy `policy` holds for `conn` (whose port is
/// ignored); a match the agent cannot evaluate holds (fail closed).
fn match_ports(policy: &Authorization, m: &Match, conn: &Conn<'_>) -> Ports {
    let mut portless = m.clone();
    portless.destination_ports.clear();
    portless.not_destination_ports.clear();
    let probe = Authorization {
        rules: vec![eval_rule(portless)],
        action: Action::Deny as i32,
        extensions: policy.extensions.clone(),
        ..Default::default()
    };
    if !eval::policy_matches(&probe, conn) {
        return Ports::none();
    }
    let only = if m.destination_ports.is_empty() {
        Ports::all()
    } else {
        Ports::Only(port_list(&m.destination_ports))
    };
    only.intersect(Ports::AllExcept(port_list(&m.not_destination_ports)))
}

fn eval_rule(m: Match) -> mesh_xds::proto::istio_security::Rule {
    mesh_xds::proto::istio_security::Rule {
        clauses: vec![mesh_xds::proto::istio_security::Clause { matches: vec![m] }],
    }
}

/// Where policy `p` holds for `conn` (whose port is ignored).
fn policy_ports(p: &Authorization, conn: &Conn<'_>) -> Ports {
    p.rules.iter().fold(Ports::none(), |acc, rule| {
        let rule_ports = rule.clauses.iter().fold(Ports::all(), |acc, clause| {
            let clause_ports = clause
                .matches
                .iter()
                .fold(Ports::none(), |acc, m| acc.union(match_ports(p, m, conn)));
            acc.intersect(clause_ports)
        });
        acc.union(rule_ports)
    })
}

/// One enrolled pod of this node: its netns cookie and address.
#[derive(Debug, Clone, Copy)]
pub struct LocalPod {
    pub netns_cookie: u64,
    pub ip: IpAddr,
}

/// A compiled entry and the policy it comes from (for the admin view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelDeny {
    pub key: DenyKey,
    pub policy: String,
}

fn is_enforced_deny(p: &Authorization) -> bool {
    p.action == Action::Deny as i32 && !p.dry_run
}

/// The `deny_connect` entries for `pods` under the view's policies.
pub fn compile(view: &MeshView, pods: &[LocalPod]) -> Vec<KernelDeny> {
    // The destinations that have an enforced DENY at all, found once (not
    // once per local pod): usually a handful out of every mesh workload.
    // A workload behind its own waypoint is reached through it (route/):
    // its policies see the waypoint's identity, never the source pod's, so
    // none of them is compiled against the source here.
    let targets: Vec<(&WorkloadInfo, Vec<&Authorization>)> = view
        .workloads()
        .filter(|w| w.mesh && w.waypoint.is_none())
        .filter_map(|dst| {
            let denies: Vec<&Authorization> = view
                .policies
                .applicable(dst)
                .into_iter()
                .filter(|p| is_enforced_deny(p))
                .collect();
            (!denies.is_empty()).then_some((dst, denies))
        })
        .collect();
    let mut out = Vec::new();
    if targets.is_empty() {
        return out;
    }
    for pod in pods {
        let Some(src) = view.workload_by_ip(pod.ip).filter(|w| w.mesh) else {
            continue;
        };
        // Per destination (ip, port or 0): denied, by which policy.
        let mut denied: BTreeMap<(IpAddr, u16), String> = BTreeMap::new();
        // Per destination workload uid: the ports denied (for VIPs).
        let mut by_uid: BTreeMap<&str, Ports> = BTreeMap::new();
        for (dst, denies) in &targets {
            let mut all_ips = Ports::all();
            for &dst_ip in &dst.ips {
                let conn = Conn {
                    src_ip: Some(pod.ip),
                    src: Some(&src.identity),
                    dst_ip,
                    dst_port: 0,
                };
                let mut here = Ports::none();
                for p in denies {
                    let ports = policy_ports(p, &conn);
                    let name = eval::policy_name(p);
                    match &ports {
                        Ports::Only(list) => {
                            for port in list {
                                denied.entry((dst_ip, *port)).or_insert(name.clone());
                            }
                        }
                        Ports::AllExcept(except) if except.is_empty() => {
                            denied.insert((dst_ip, 0), name.clone());
                        }
                        // "every port but …": not expressible; the proxy enforces it.
                        Ports::AllExcept(_) => {}
                    }
                    here = here.union(ports);
                }
                all_ips = all_ips.intersect(here);
            }
            by_uid.insert(dst.uid.as_str(), all_ips);
        }
        for (vip, endpoints) in view.service_endpoints() {
            let all_denied = !endpoints.is_empty()
                && endpoints.iter().all(|(uid, port)| {
                    by_uid.get(uid.as_str()).is_some_and(|ports| match ports {
                        Ports::Only(list) => list.contains(port),
                        Ports::AllExcept(except) => !except.contains(port),
                    })
                });
            if all_denied {
                denied
                    .entry((vip.ip(), vip.port()))
                    .or_insert_with(|| format!("every endpoint of {vip}"));
            }
        }
        // A port-0 entry makes per-port entries for the same address moot.
        let whole: BTreeSet<IpAddr> = denied
            .keys()
            .filter(|(_, port)| *port == 0)
            .map(|(ip, _)| *ip)
            .collect();
        for ((ip, port), policy) in denied {
            if port != 0 && whole.contains(&ip) {
                continue;
            }
            out.push(KernelDeny {
                key: DenyKey {
                    netns_cookie: pod.netns_cookie,
                    addr: mapped(ip),
                    port,
                    _pad: [0; 6],
                },
                policy,
            });
        }
    }
    out
}

/// True when no plaintext client, from any address to any port, is allowed
/// to reach `dst` under `policies` (those that apply to it).
pub fn plaintext_always_denied(policies: &[&Authorization]) -> bool {
    let no_identity_needed = |m: &Match| {
        m.principals.is_empty() && m.namespaces.is_empty() && m.service_accounts.is_empty()
    };
    // An ALLOW match that surely holds for some identity-less connection:
    // no positive identity requirement, nothing it cannot evaluate.
    // (Address and port constraints can be met by some connection, so they
    // do not matter here.)
    let admits_plaintext = |p: &Authorization, m: &Match| {
        no_identity_needed(m) && p.extensions.is_empty() && eval::match_known(m)
    };
    // A DENY match that holds (or, unevaluable, counts as holding) for
    // every identity-less connection.
    let holds_for_every_plaintext = |m: &Match| {
        no_identity_needed(m)
            && m.source_ips.is_empty()
            && m.not_source_ips.is_empty()
            && m.destination_ips.is_empty()
            && m.not_destination_ips.is_empty()
            && m.destination_ports.is_empty()
            && m.not_destination_ports.is_empty()
    };
    let enforced = policies.iter().filter(|p| !p.dry_run);
    let mut allow_exists = false;
    let mut some_allow_admits = false;
    for p in enforced {
        if p.action == Action::Deny as i32 {
            let denies_all = p.rules.iter().any(|r| {
                r.clauses
                    .iter()
                    .all(|c| c.matches.iter().any(holds_for_every_plaintext))
            });
            if denies_all {
                return true;
            }
        } else if p.action == Action::Allow as i32 {
            allow_exists = true;
            some_allow_admits |= p.rules.iter().any(|r| {
                r.clauses
                    .iter()
                    .all(|c| c.matches.iter().any(|m| admits_plaintext(p, m)))
            });
        }
    }
    allow_exists && !some_allow_admits
}

#[cfg(test)]
mod tests;
