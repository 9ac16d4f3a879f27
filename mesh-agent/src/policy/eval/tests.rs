//! Istio's evaluation order and ztunnel's matching, case by case.
use mesh_xds::proto::istio_security::{Clause, Rule, Scope, StringMatch};

use super::*;

pub fn exact(s: &str) -> StringMatch {
    StringMatch {
        match_type: Some(MatchType::Exact(s.into())),
    }
}

pub fn cidr(s: &str) -> Address {
    let (ip, len) = s.split_once('/').unwrap();
    let ip: IpAddr = ip.parse().unwrap();
    Address {
        address: match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        },
        length: len.parse().unwrap(),
    }
}

pub fn policy(name: &str, action: Action, matches: Vec<Match>) -> Authorization {
    Authorization {
        name: name.into(),
        namespace: "default".into(),
        scope: Scope::Namespace as i32,
        action: action as i32,
        rules: vec![Rule {
            clauses: vec![Clause { matches }],
        }],
        dry_run: false,
        ..Default::default()
    }
}

fn id(ns: &str, sa: &str) -> Identity {
    format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")
        .parse()
        .unwrap()
}

fn conn<'a>(src: Option<&'a Identity>, src_ip: &str, port: u16) -> Conn<'a> {
    Conn {
        src_ip: Some(src_ip.parse().unwrap()),
        src,
        dst_ip: "10.244.1.9".parse().unwrap(),
        dst_port: port,
    }
}

fn verdict(policies: &[Authorization], c: &Conn<'_>) -> Verdict {
    evaluate(policies.iter(), c).verdict
}

fn deny(name: &str) -> Verdict {
    Verdict::Deny {
        policy: format!("default/{name}"),
    }
}

#[test]
fn no_policy_allows() {
    let sleep = id("default", "sleep");
    assert_eq!(
        verdict(&[], &conn(Some(&sleep), "10.0.0.1", 80)),
        Verdict::Allow
    );
}

#[test]
fn allow_must_match_when_one_exists() {
    let allow = policy(
        "only-sleep",
        Action::Allow,
        vec![Match {
            principals: vec![exact("cluster.local/ns/default/sa/sleep")],
            ..Default::default()
        }],
    );
    let sleep = id("default", "sleep");
    let other = id("default", "other");
    let p = [allow];
    assert_eq!(
        verdict(&p, &conn(Some(&sleep), "10.0.0.1", 80)),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, &conn(Some(&other), "10.0.0.1", 80)),
        Verdict::Deny {
            policy: NO_ALLOW_MATCHED.into()
        }
    );
    // Plaintext has no principal: a positive principal match fails.
    assert!(matches!(
        verdict(&p, &conn(None, "10.0.0.1", 80)),
        Verdict::Deny { .. }
    ));
}

#[test]
fn deny_wins_over_allow() {
    let allow_all = policy("allow-all", Action::Allow, vec![Match::default()]);
    let deny_ns = policy(
        "deny-foo",
        Action::Deny,
        vec![Match {
            namespaces: vec![exact("foo")],
            ..Default::default()
        }],
    );
    let p = [allow_all, deny_ns];
    let foo = id("foo", "x");
    let bar = id("bar", "x");
    assert_eq!(
        verdict(&p, &conn(Some(&foo), "10.0.0.1", 80)),
        deny("deny-foo")
    );
    assert_eq!(
        verdict(&p, &conn(Some(&bar), "10.0.0.1", 80)),
        Verdict::Allow
    );
}

#[test]
fn not_principals_and_presence() {
    // istiod's STRICT conversion: deny when there is no principal.
    let strict = policy(
        "strict",
        Action::Deny,
        vec![Match {
            not_principals: vec![StringMatch {
                match_type: Some(MatchType::Presence(mesh_xds::proto::wkt::Empty {})),
            }],
            ..Default::default()
        }],
    );
    let p = [strict];
    let sleep = id("default", "sleep");
    assert_eq!(
        verdict(&p, &conn(Some(&sleep), "10.0.0.1", 80)),
        Verdict::Allow
    );
    assert_eq!(verdict(&p, &conn(None, "10.0.0.1", 80)), deny("strict"));
}

#[test]
fn wildcard_forms() {
    let m = |sm: MatchType| {
        policy(
            "w",
            Action::Deny,
            vec![Match {
                principals: vec![StringMatch {
                    match_type: Some(sm),
                }],
                ..Default::default()
            }],
        )
    };
    let sleep = id("default", "sleep");
    let c = conn(Some(&sleep), "10.0.0.1", 80);
    assert_eq!(
        verdict(
            &[m(MatchType::Prefix("cluster.local/ns/default/".into()))],
            &c
        ),
        deny("w")
    );
    assert_eq!(
        verdict(&[m(MatchType::Suffix("/sa/sleep".into()))], &c),
        deny("w")
    );
    assert_eq!(
        verdict(&[m(MatchType::Suffix("/sa/other".into()))], &c),
        Verdict::Allow
    );
}

#[test]
fn ip_blocks_ports_and_not_ports() {
    let p = [policy(
        "block",
        Action::Deny,
        vec![Match {
            source_ips: vec![cidr("10.0.0.0/24")],
            not_source_ips: vec![cidr("10.0.0.7/32")],
            destination_ports: vec![80, 443],
            ..Default::default()
        }],
    )];
    let s = id("default", "sleep");
    assert_eq!(verdict(&p, &conn(Some(&s), "10.0.0.1", 80)), deny("block"));
    assert_eq!(verdict(&p, &conn(Some(&s), "10.0.0.7", 80)), Verdict::Allow);
    assert_eq!(verdict(&p, &conn(Some(&s), "10.0.1.1", 80)), Verdict::Allow);
    assert_eq!(
        verdict(&p, &conn(Some(&s), "10.0.0.1", 8080)),
        Verdict::Allow
    );
    let not_ports = [policy(
        "np",
        Action::Deny,
        vec![Match {
            not_destination_ports: vec![9090],
            ..Default::default()
        }],
    )];
    assert_eq!(
        verdict(&not_ports, &conn(Some(&s), "10.0.0.1", 80)),
        deny("np")
    );
    assert_eq!(
        verdict(&not_ports, &conn(Some(&s), "10.0.0.1", 9090)),
        Verdict::Allow
    );
}

#[test]
fn clauses_and_rules() {
    // from namespace foo AND to port 80 (two clauses), OR (second rule) port 22.
    let p = Authorization {
        name: "r".into(),
        namespace: "default".into(),
        scope: Scope::Namespace as i32,
        action: Action::Deny as i32,
        rules: vec![
            Rule {
                clauses: vec![
                    Clause {
                        matches: vec![Match {
                            namespaces: vec![exact("foo")],
                            ..Default::default()
                        }],
                    },
                    Clause {
                        matches: vec![Match {
                            destination_ports: vec![80],
                            ..Default::default()
                        }],
                    },
                ],
            },
            Rule {
                clauses: vec![Clause {
                    matches: vec![Match {
                        destination_ports: vec![22],
                        ..Default::default()
                    }],
                }],
            },
        ],
        dry_run: false,
        ..Default::default()
    };
    let foo = id("foo", "a");
    let bar = id("bar", "a");
    let p = [p];
    assert_eq!(verdict(&p, &conn(Some(&foo), "10.0.0.1", 80)), deny("r"));
    assert_eq!(
        verdict(&p, &conn(Some(&bar), "10.0.0.1", 80)),
        Verdict::Allow
    );
    assert_eq!(verdict(&p, &conn(Some(&bar), "10.0.0.1", 22)), deny("r"));
}

#[test]
fn empty_rules_match_nothing_and_empty_rule_matches_all() {
    let mut allow_nothing = policy("nothing", Action::Allow, vec![]);
    allow_nothing.rules.clear();
    let s = id("default", "sleep");
    assert!(matches!(
        verdict(&[allow_nothing], &conn(Some(&s), "10.0.0.1", 80)),
        Verdict::Deny { .. }
    ));
    let mut deny_all = policy("all", Action::Deny, vec![]);
    deny_all.rules = vec![Rule { clauses: vec![] }];
    assert_eq!(
        verdict(&[deny_all], &conn(Some(&s), "10.0.0.1", 80)),
        deny("all")
    );
}

#[test]
fn audit_and_dry_run_never_enforce() {
    let mut dry = policy("dry", Action::Deny, vec![Match::default()]);
    dry.dry_run = true;
    let audit = policy("audit", Action::Audit, vec![Match::default()]);
    let s = id("default", "sleep");
    let e = evaluate([dry, audit].iter(), &conn(Some(&s), "10.0.0.1", 80));
    assert_eq!(e.verdict, Verdict::Allow);
    assert_eq!(e.audited, vec!["default/audit".to_string()]);
    assert_eq!(e.dry_run_denials, vec!["default/dry".to_string()]);
}

#[test]
fn cidr_edges() {
    assert!(cidr_contains(
        &cidr("0.0.0.0/0"),
        "1.2.3.4".parse().unwrap()
    ));
    assert!(cidr_contains(
        &cidr("10.1.0.0/16"),
        "10.1.255.1".parse().unwrap()
    ));
    assert!(!cidr_contains(
        &cidr("10.1.0.0/16"),
        "10.2.0.1".parse().unwrap()
    ));
    assert!(cidr_contains(&cidr("fd00::/8"), "fd12::1".parse().unwrap()));
    assert!(!cidr_contains(
        &cidr("fd00::/8"),
        "10.0.0.1".parse().unwrap()
    ));
    assert!(cidr_contains(
        &cidr("10.0.0.0/8"),
        "::ffff:10.9.9.9".parse().unwrap()
    ));
    // A length beyond the width contains nothing.
    assert!(!cidr_contains(
        &cidr("10.0.0.0/33"),
        "10.0.0.0".parse().unwrap()
    ));
}
