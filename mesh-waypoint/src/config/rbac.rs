//! `envoy.filters.http.rbac` policies (Istio's L7 AuthorizationPolicy as
//! Envoy RBAC), compiled, and their evaluation: a policy matches when any
//! permission and any principal match; an ALLOW filter lets a request
//! through when some policy matches, a DENY filter stops it when some does.
use std::net::IpAddr;

use envoy_types::pb::envoy::config::{
    core::v3::CidrRange,
    rbac::v3::{
        permission::Rule, principal::Identifier, Permission as PbPermission,
        Principal as PbPrincipal, Rbac as PbRules,
    },
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::{Rbac as PbRbac, RbacPerRoute};
use mesh_admin::kleene::{all, any};

use super::{
    at,
    matcher::{HeaderMatcher, RequestView, StringMatcher},
    unsupported::warn_once,
    ConfigError,
};

pub const RBAC_FILTER_PREFIX: &str = "envoy.filters.http.rbac";
pub const RBAC_TYPE: &str = "envoy.extensions.filters.http.rbac.v3.RBAC";
pub const RBAC_PER_ROUTE_TYPE: &str = "envoy.extensions.filters.http.rbac.v3.RBACPerRoute";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacAction {
    Allow,
    Deny,
    /// LOG: never blocks.
    Log,
}

/// An IP prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn compile(c: &CidrRange, field: &str) -> Result<Self, ConfigError> {
        let addr: IpAddr = c.address_prefix.parse().map_err(|_| {
            ConfigError::new(
                at(field, "address_prefix"),
                format!("not an IP: {:?}", c.address_prefix),
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = c.prefix_len.map_or(max, |v| v.value);
        if len > max {
            return Err(ConfigError::new(
                at(field, "prefix_len"),
                format!("{len} > {max}"),
            ));
        }
        Ok(Cidr {
            addr,
            len: len as u8,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Permission {
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Any,
    Header(HeaderMatcher),
    UrlPath(StringMatcher),
    DestinationIp(Cidr),
    DestinationPort(u16),
    DestinationPortRange(i32, i32),
    Not(Box<Permission>),
    /// A rule the waypoint cannot evaluate (metadata, extensions): never
    /// matches, so an ALLOW needing it fails closed.
    Unsupported,
}

#[derive(Debug, Clone)]
pub enum Principal {
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Any,
    /// None: any authenticated peer.
    Authenticated(Option<StringMatcher>),
    SourceIp(Cidr),
    DirectRemoteIp(Cidr),
    RemoteIp(Cidr),
    Header(HeaderMatcher),
    UrlPath(StringMatcher),
    Not(Box<Principal>),
    Unsupported,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub principals: Vec<Principal>,
}

#[derive(Debug, Clone)]
pub struct RbacRules {
    pub action: RbacAction,
    pub policies: Vec<Policy>,
}

/// What one RBAC check sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RbacInput<'a> {
    pub request: RequestView<'a>,
    /// The mTLS peer's `spiffe://…` identity.
    pub principal: Option<&'a str>,
    /// Envoy's remote address (`remoteIpBlocks`): the verified source pod
    /// of a tunnel, the TCP peer on the plain listener; None = unknown.
    pub source_ip: Option<IpAddr>,
    /// Envoy's direct remote address (`ipBlocks`); the same on the
    /// waypoint (no trusted `x-forwarded-for` hops).
    pub direct_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    pub destination_port: Option<u16>,
}

fn ip_in(c: &Cidr, ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| c.contains(ip))
}

/// A source-IP condition: `None` (cannot tell) when the source address is
/// not known, i.e. a tunnel's claimed address failed verification.
fn source_in(c: &Cidr, ip: Option<IpAddr>) -> Option<bool> {
    ip.map(|ip| c.contains(ip))
}

impl Permission {
    fn compile(p: &PbPermission, field: &str) -> Result<Self, ConfigError> {
        let set = |rules: &[PbPermission], name: &str| -> Result<Vec<Permission>, ConfigError> {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| Permission::compile(r, &format!("{field}.{name}.rules[{i}]")))
                .collect()
        };
        Ok(match &p.rule {
            Some(Rule::AndRules(s)) => Permission::And(set(&s.rules, "and_rules")?),
            Some(Rule::OrRules(s)) => Permission::Or(set(&s.rules, "or_rules")?),
            Some(Rule::Any(_)) => Permission::Any,
            Some(Rule::Header(h)) => {
                Permission::Header(HeaderMatcher::compile(h, &at(field, "header"))?)
            }
            Some(Rule::UrlPath(pm)) => match &pm.rule {
                Some(envoy_types::pb::envoy::r#type::matcher::v3::path_matcher::Rule::Path(s)) => {
                    Permission::UrlPath(StringMatcher::compile(s, &at(field, "url_path.path"))?)
                }
                None => return Err(ConfigError::new(at(field, "url_path"), "no rule")),
            },
            Some(Rule::DestinationIp(c)) => {
                Permission::DestinationIp(Cidr::compile(c, &at(field, "destination_ip"))?)
            }
            Some(Rule::DestinationPort(p)) => {
                Permission::DestinationPort(u16::try_from(*p).map_err(|_| {
                    ConfigError::new(at(field, "destination_port"), format!("{p} is not a port"))
                })?)
            }
            Some(Rule::DestinationPortRange(r)) => Permission::DestinationPortRange(r.start, r.end),
            Some(Rule::NotRule(inner)) => Permission::Not(Box::new(Permission::compile(
                inner,
                &at(field, "not_rule"),
            )?)),
            Some(_) => {
                warn_once("RBAC permission (metadata/extension/SNI)", field);
                Permission::Unsupported
            }
            None => return Err(ConfigError::new(field, "permission has no rule")),
        })
    }

    /// Whether the permission matches; `None` when it needs what this
    /// proxy cannot check (metadata, SNI, extensions), so that ALLOW and
    /// DENY both fail closed on it.
    pub fn matches(&self, input: &RbacInput<'_>) -> Option<bool> {
        match self {
            Permission::And(v) => all(v.iter().map(|p| p.matches(input))),
            Permission::Or(v) => any(v.iter().map(|p| p.matches(input))),
            Permission::Any => Some(true),
            Permission::Header(h) => Some(h.matches(&input.request)),
            Permission::UrlPath(s) => Some(s.matches(input.request.path_only())),
            Permission::DestinationIp(c) => Some(ip_in(c, input.destination_ip)),
            Permission::DestinationPort(p) => Some(input.destination_port == Some(*p)),
            Permission::DestinationPortRange(lo, hi) => Some(
                input
                    .destination_port
                    .is_some_and(|p| i32::from(p) >= *lo && i32::from(p) < *hi),
            ),
            Permission::Not(p) => p.matches(input).map(|m| !m),
            Permission::Unsupported => None,
        }
    }
}

impl Principal {
    fn compile(p: &PbPrincipal, field: &str) -> Result<Self, ConfigError> {
        let set = |ids: &[PbPrincipal], name: &str| -> Result<Vec<Principal>, ConfigError> {
            ids.iter()
                .enumerate()
                .map(|(i, r)| Principal::compile(r, &format!("{field}.{name}.ids[{i}]")))
                .collect()
        };
        Ok(match &p.identifier {
            Some(Identifier::AndIds(s)) => Principal::And(set(&s.ids, "and_ids")?),
            Some(Identifier::OrIds(s)) => Principal::Or(set(&s.ids, "or_ids")?),
            Some(Identifier::Any(_)) => Principal::Any,
            Some(Identifier::Authenticated(a)) => Principal::Authenticated(
                a.principal_name
                    .as_ref()
                    .map(|m| StringMatcher::compile(m, &at(field, "authenticated.principal_name")))
                    .transpose()?,
            ),
            Some(Identifier::SourceIp(c)) => {
                Principal::SourceIp(Cidr::compile(c, &at(field, "source_ip"))?)
            }
            Some(Identifier::DirectRemoteIp(c)) => {
                Principal::DirectRemoteIp(Cidr::compile(c, &at(field, "direct_remote_ip"))?)
            }
            Some(Identifier::RemoteIp(c)) => {
                Principal::RemoteIp(Cidr::compile(c, &at(field, "remote_ip"))?)
            }
            Some(Identifier::Header(h)) => {
                Principal::Header(HeaderMatcher::compile(h, &at(field, "header"))?)
            }
            Some(Identifier::UrlPath(pm)) => match &pm.rule {
                Some(envoy_types::pb::envoy::r#type::matcher::v3::path_matcher::Rule::Path(s)) => {
                    Principal::UrlPath(StringMatcher::compile(s, &at(field, "url_path.path"))?)
                }
                None => return Err(ConfigError::new(at(field, "url_path"), "no rule")),
            },
            Some(Identifier::NotId(inner)) => {
                Principal::Not(Box::new(Principal::compile(inner, &at(field, "not_id"))?))
            }
            Some(_) => {
                warn_once("RBAC principal (metadata/filter_state/extension)", field);
                Principal::Unsupported
            }
            None => return Err(ConfigError::new(field, "principal has no identifier")),
        })
    }

    /// Whether the principal matches; `None` when that depends on a source
    /// address that is not known.
    pub fn matches(&self, input: &RbacInput<'_>) -> Option<bool> {
        match self {
            Principal::And(v) => all(v.iter().map(|p| p.matches(input))),
            Principal::Or(v) => any(v.iter().map(|p| p.matches(input))),
            Principal::Any => Some(true),
            Principal::Authenticated(None) => Some(input.principal.is_some()),
            Principal::Authenticated(Some(m)) => {
                Some(input.principal.is_some_and(|p| m.matches(p)))
            }
            Principal::SourceIp(c) | Principal::RemoteIp(c) => source_in(c, input.source_ip),
            Principal::DirectRemoteIp(c) => source_in(c, input.direct_ip),
            Principal::Header(h) => Some(h.matches(&input.request)),
            Principal::UrlPath(s) => Some(s.matches(input.request.path_only())),
            Principal::Not(p) => p.matches(input).map(|m| !m),
            Principal::Unsupported => None,
        }
    }
}

impl RbacRules {
    pub fn compile(r: &PbRules, field: &str) -> Result<Self, ConfigError> {
        let action = match r.action {
            0 => RbacAction::Allow,
            1 => RbacAction::Deny,
            2 => RbacAction::Log,
            other => {
                return Err(ConfigError::new(
                    at(field, "action"),
                    format!("unknown action {other}"),
                ))
            }
        };
        // Sorted by name so evaluation order (and the matched policy in
        // logs) does not depend on map order.
        let mut names: Vec<&String> = r.policies.keys().collect();
        names.sort();
        let mut policies = Vec::with_capacity(names.len());
        for name in names {
            let p = &r.policies[name];
            let pf = format!("{field}.policies[{name}]");
            if p.condition.is_some() || p.checked_condition.is_some() {
                warn_once("RBAC policy condition", &pf);
            }
            policies.push(Policy {
                name: name.clone(),
                permissions: p
                    .permissions
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Permission::compile(x, &format!("{pf}.permissions[{i}]")))
                    .collect::<Result<_, _>>()?,
                principals: p
                    .principals
                    .iter()
                    .enumerate()
                    .map(|(i, x)| Principal::compile(x, &format!("{pf}.principals[{i}]")))
                    .collect::<Result<_, _>>()?,
            });
        }
        Ok(RbacRules { action, policies })
    }

    /// Whether `policy` matches `input` (`None`: cannot tell).
    fn policy_matches(policy: &Policy, input: &RbacInput<'_>) -> Option<bool> {
        let permitted = any(policy.permissions.iter().map(|x| x.matches(input)));
        if permitted == Some(false) {
            return Some(false);
        }
        all([
            permitted,
            any(policy.principals.iter().map(|x| x.matches(input))),
        ])
    }

    /// The first policy that matches `input` or cannot be ruled out, by
    /// name order, with whether it surely matched.
    pub fn matching_policy(&self, input: &RbacInput<'_>) -> Option<(&str, bool)> {
        self.policies
            .iter()
            .find_map(|p| match Self::policy_matches(p, input) {
                Some(false) => None,
                m => Some((p.name.as_str(), m.is_some())),
            })
    }

    /// Whether this filter lets the request through. Fail-safe when a
    /// policy's match depends on an unknown source address: an ALLOW needs
    /// a policy that surely matches, a DENY stops the request unless every
    /// policy surely does not match.
    pub fn allows(&self, input: &RbacInput<'_>) -> bool {
        match self.action {
            RbacAction::Allow => self
                .policies
                .iter()
                .any(|p| Self::policy_matches(p, input) == Some(true)),
            RbacAction::Deny => self
                .policies
                .iter()
                .all(|p| Self::policy_matches(p, input) == Some(false)),
            RbacAction::Log => true,
        }
    }
}

/// An RBAC http filter's config; `rules: None` enforces nothing.
pub fn compile_filter(r: &PbRbac, field: &str) -> Result<Option<RbacRules>, ConfigError> {
    if r.matcher.is_some() {
        warn_once("RBAC.matcher (unified matcher)", field);
    }
    r.rules
        .as_ref()
        .map(|rules| RbacRules::compile(rules, &at(field, "rules")))
        .transpose()
}

/// A route's `RBACPerRoute`: `None` disables the filter for the route.
pub fn compile_per_route(r: &RbacPerRoute, field: &str) -> Result<Option<RbacRules>, ConfigError> {
    match &r.rbac {
        Some(rbac) => compile_filter(rbac, &at(field, "rbac")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let c = Cidr::compile(
            &CidrRange {
                address_prefix: "10.1.0.0".into(),
                prefix_len: Some(mesh_xds::proto::wkt::UInt32Value { value: 16 }),
            },
            "c",
        )
        .unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.9.9".parse().unwrap()));
        let host = Cidr::compile(
            &CidrRange {
                address_prefix: "10.1.2.3".into(),
                prefix_len: None,
            },
            "c",
        )
        .unwrap();
        assert!(host.contains("10.1.2.3".parse().unwrap()));
        assert!(!host.contains("10.1.2.4".parse().unwrap()));
        let all = Cidr::compile(
            &CidrRange {
                address_prefix: "0.0.0.0".into(),
                prefix_len: Some(mesh_xds::proto::wkt::UInt32Value { value: 0 }),
            },
            "c",
        )
        .unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }

    fn input<'a>(
        headers: &'a http::HeaderMap,
        principal: Option<&'a str>,
        port: u16,
    ) -> RbacInput<'a> {
        RbacInput {
            request: RequestView {
                method: &http::Method::GET,
                authority: "reviews:9080",
                path: "/api/x?q=1",
                scheme: "http",
                headers,
            },
            principal,
            source_ip: Some("10.244.1.5".parse().unwrap()),
            direct_ip: Some("192.168.0.2".parse().unwrap()),
            destination_ip: Some("10.96.0.20".parse().unwrap()),
            destination_port: Some(port),
        }
    }

    fn policy(perm: Permission, principal: Principal) -> RbacRules {
        RbacRules {
            action: RbacAction::Allow,
            policies: vec![Policy {
                name: "p".into(),
                permissions: vec![perm],
                principals: vec![principal],
            }],
        }
    }

    #[test]
    fn an_unknown_source_fails_safe_for_allow_and_deny() {
        let h = http::HeaderMap::new();
        let mut unknown = input(&h, None, 9080);
        unknown.source_ip = None;
        unknown.direct_ip = None;
        let pod = Cidr {
            addr: "10.244.1.5".parse().unwrap(),
            len: 32,
        };
        for ip in [
            Principal::DirectRemoteIp(pod),
            Principal::RemoteIp(pod),
            Principal::Not(Box::new(Principal::DirectRemoteIp(pod))),
            Principal::And(vec![Principal::Any, Principal::SourceIp(pod)]),
        ] {
            let mut r = policy(Permission::Any, ip.clone());
            assert!(!r.allows(&unknown), "ALLOW {ip:?}");
            r.action = RbacAction::Deny;
            assert!(!r.allows(&unknown), "DENY {ip:?}");
        }
        // Decided without the address: known outcomes stay.
        let or_any = Principal::Or(vec![Principal::Any, Principal::DirectRemoteIp(pod)]);
        assert!(policy(Permission::Any, or_any).allows(&unknown));
        let and_none = Principal::And(vec![
            Principal::Authenticated(None),
            Principal::DirectRemoteIp(pod),
        ]);
        let mut deny = policy(Permission::Any, and_none);
        deny.action = RbacAction::Deny;
        assert!(deny.allows(&unknown), "unauthenticated: surely no match");
        // A permission that does not match rules the policy out.
        let mut deny = policy(
            Permission::UrlPath(StringMatcher::exact("/other")),
            Principal::DirectRemoteIp(pod),
        );
        deny.action = RbacAction::Deny;
        assert!(deny.allows(&unknown));
    }

    #[test]
    fn combinators_ports_and_identities() {
        let h = http::HeaderMap::new();
        let sleep = "spiffe://cluster.local/ns/default/sa/sleep";
        let not_sleep = Principal::Not(Box::new(Principal::Authenticated(Some(
            StringMatcher::exact(sleep),
        ))));
        let r = policy(Permission::DestinationPort(9080), not_sleep);
        assert!(!r.allows(&input(&h, Some(sleep), 9080)));
        assert!(r.allows(&input(&h, Some("spiffe://cluster.local/ns/x/sa/y"), 9080)));
        assert!(!r.allows(&input(&h, Some("spiffe://cluster.local/ns/x/sa/y"), 9081)));
        // Unauthenticated: "any authenticated" fails, its negation matches.
        let r = policy(Permission::Any, Principal::Authenticated(None));
        assert!(!r.allows(&input(&h, None, 9080)));
        let either = Principal::Or(vec![
            Principal::DirectRemoteIp(Cidr {
                addr: "192.168.0.0".parse().unwrap(),
                len: 24,
            }),
            Principal::Unsupported,
        ]);
        let both = Permission::And(vec![
            Permission::UrlPath(StringMatcher::exact("/api/x")),
            Permission::DestinationIp(Cidr {
                addr: "10.96.0.0".parse().unwrap(),
                len: 12,
            }),
        ]);
        assert!(policy(both.clone(), either).allows(&input(&h, None, 9080)));
        // DENY with the same match blocks; LOG never does.
        let mut deny = policy(both.clone(), Principal::Any);
        deny.action = RbacAction::Deny;
        assert!(!deny.allows(&input(&h, None, 9080)));
        deny.action = RbacAction::Log;
        assert!(deny.allows(&input(&h, None, 9080)));
        // An unsupported rule cannot be checked: an ALLOW needing it fails
        // closed, and so does a DENY (it stops the request).
        assert!(!policy(Permission::Unsupported, Principal::Any).allows(&input(&h, None, 9080)));
        let mut deny = policy(Permission::Unsupported, Principal::Any);
        deny.action = RbacAction::Deny;
        assert!(!deny.allows(&input(&h, None, 9080)));
        let mut deny = policy(Permission::Any, Principal::Unsupported);
        deny.action = RbacAction::Deny;
        assert!(!deny.allows(&input(&h, None, 9080)));
        // No policies: ALLOW denies everything, DENY allows everything.
        let empty = RbacRules {
            action: RbacAction::Allow,
            policies: vec![],
        };
        assert!(!empty.allows(&input(&h, Some(sleep), 9080)));
    }
}
