//! `service_accounts` / `not_service_accounts` as istiod sends them
//! (`from.source.serviceAccounts`), and conditions the agent cannot
//! evaluate failing closed.
use mesh_xds::proto::{
    istio_security::{Clause, Rule, Scope},
    istio_workload::Extension,
};

use super::tests::{exact, policy};
use super::*;

fn id(ns: &str, sa: &str) -> Identity {
    format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")
        .parse()
        .unwrap()
}

fn sa(ns: &str, name: &str) -> ServiceAccountMatch {
    ServiceAccountMatch {
        namespace: ns.into(),
        service_account: name.into(),
    }
}

fn conn(src: Option<&Identity>) -> Conn<'_> {
    Conn {
        src_ip: Some("10.244.1.2".parse().unwrap()),
        src,
        dst_ip: "10.244.1.9".parse().unwrap(),
        dst_port: 9080,
    }
}

fn verdict(policies: &[Authorization], c: &Conn<'_>) -> Verdict {
    evaluate(policies.iter(), c).verdict
}

fn denied_by(name: &str) -> Verdict {
    Verdict::Deny {
        policy: format!("default/{name}"),
    }
}

fn no_allow() -> Verdict {
    Verdict::Deny {
        policy: NO_ALLOW_MATCHED.into(),
    }
}

/// An extension the agent does not know, as a newer control plane (or the
/// unknown-field marker) puts it on a match or a policy.
fn unknown_extension() -> Extension {
    Extension {
        name: "io.example/unknown-condition".into(),
        config: None,
    }
}

#[test]
fn allow_service_accounts_admits_only_that_account() {
    let allow = policy(
        "only-sleep",
        Action::Allow,
        vec![Match {
            service_accounts: vec![sa("default", "sleep")],
            ..Default::default()
        }],
    );
    let (sleep, other_sa, other_ns) = (
        id("default", "sleep"),
        id("default", "productpage"),
        id("other", "sleep"),
    );
    let policies = [allow];
    assert_eq!(verdict(&policies, &conn(Some(&sleep))), Verdict::Allow);
    assert_eq!(verdict(&policies, &conn(Some(&other_sa))), no_allow());
    assert_eq!(
        verdict(&policies, &conn(Some(&other_ns))),
        no_allow(),
        "same account name in another namespace"
    );
    assert_eq!(verdict(&policies, &conn(None)), no_allow(), "plaintext");
    // Any trust domain: the match names namespace and account only.
    let foreign: Identity = "spiffe://other.domain/ns/default/sa/sleep".parse().unwrap();
    assert_eq!(verdict(&policies, &conn(Some(&foreign))), Verdict::Allow);
}

#[test]
fn deny_service_accounts_denies_only_that_account() {
    let deny = policy(
        "no-sleep",
        Action::Deny,
        vec![Match {
            service_accounts: vec![sa("default", "sleep"), sa("default", "curl")],
            ..Default::default()
        }],
    );
    let policies = [deny];
    for name in ["sleep", "curl"] {
        let who = id("default", name);
        assert_eq!(
            verdict(&policies, &conn(Some(&who))),
            denied_by("no-sleep"),
            "{name}"
        );
    }
    let productpage = id("default", "productpage");
    assert_eq!(
        verdict(&policies, &conn(Some(&productpage))),
        Verdict::Allow
    );
    assert_eq!(verdict(&policies, &conn(None)), Verdict::Allow, "plaintext");
}

#[test]
fn not_service_accounts_in_allow_and_deny() {
    let allow = policy(
        "all-but-sleep",
        Action::Allow,
        vec![Match {
            not_service_accounts: vec![sa("default", "sleep")],
            ..Default::default()
        }],
    );
    let deny = policy(
        "deny-all-but-sleep",
        Action::Deny,
        vec![Match {
            not_service_accounts: vec![sa("default", "sleep")],
            ..Default::default()
        }],
    );
    let (sleep, productpage) = (id("default", "sleep"), id("default", "productpage"));
    let allows = [allow];
    assert_eq!(verdict(&allows, &conn(Some(&productpage))), Verdict::Allow);
    assert_eq!(verdict(&allows, &conn(Some(&sleep))), no_allow());
    let denies = [deny];
    assert_eq!(verdict(&denies, &conn(Some(&sleep))), Verdict::Allow);
    assert_eq!(
        verdict(&denies, &conn(Some(&productpage))),
        denied_by("deny-all-but-sleep")
    );
    // No identity matches no entry, so the negative list holds.
    assert_eq!(
        verdict(&denies, &conn(None)),
        denied_by("deny-all-but-sleep")
    );
}

#[test]
fn service_accounts_and_with_other_fields_of_the_match() {
    let allow = policy(
        "sleep-on-9080",
        Action::Allow,
        vec![Match {
            service_accounts: vec![sa("default", "sleep")],
            destination_ports: vec![8080],
            ..Default::default()
        }],
    );
    let sleep = id("default", "sleep");
    assert_eq!(
        verdict(&[allow], &conn(Some(&sleep))),
        no_allow(),
        "port 9080 is not 8080"
    );
}

#[test]
fn an_unevaluable_match_never_allows_and_always_denies() {
    let sleep = id("default", "sleep");
    let unknown = Match {
        service_accounts: vec![sa("default", "sleep")],
        extensions: vec![unknown_extension()],
        ..Default::default()
    };
    let allow = policy("allow-unknown", Action::Allow, vec![unknown.clone()]);
    assert_eq!(
        verdict(std::slice::from_ref(&allow), &conn(Some(&sleep))),
        no_allow(),
        "an ALLOW that cannot be evaluated does not match"
    );
    let deny = policy("deny-unknown", Action::Deny, vec![unknown]);
    assert_eq!(
        verdict(std::slice::from_ref(&deny), &conn(Some(&sleep))),
        denied_by("deny-unknown"),
        "a DENY that cannot be evaluated matches"
    );
    // The unknown condition is AND-ed with the match's known ones (Kleene):
    // a known condition that fails decides, whatever the unknown one.
    let productpage = id("default", "productpage");
    assert_eq!(
        verdict(&[deny], &conn(Some(&productpage))),
        Verdict::Allow,
        "productpage is surely not default/sleep"
    );
    let bare_deny = policy(
        "deny-bare-unknown",
        Action::Deny,
        vec![Match {
            extensions: vec![unknown_extension()],
            ..Default::default()
        }],
    );
    assert_eq!(
        verdict(&[bare_deny], &conn(None)),
        denied_by("deny-bare-unknown"),
        "nothing known rules it out"
    );
    // An unknown match next to a sure one in the same clause (OR): the
    // sure one decides an ALLOW.
    let mut either = allow;
    either.rules[0].clauses[0].matches.push(Match {
        service_accounts: vec![sa("default", "sleep")],
        ..Default::default()
    });
    assert_eq!(verdict(&[either], &conn(Some(&sleep))), Verdict::Allow);
}

#[test]
fn a_policy_extension_makes_every_rule_unevaluable() {
    let sleep = id("default", "sleep");
    let mut allow = policy(
        "allow-sleep",
        Action::Allow,
        vec![Match {
            service_accounts: vec![sa("default", "sleep")],
            ..Default::default()
        }],
    );
    allow.extensions = vec![unknown_extension()];
    assert_eq!(verdict(&[allow], &conn(Some(&sleep))), no_allow());
    let mut deny = policy(
        "deny-default",
        Action::Deny,
        vec![Match {
            namespaces: vec![exact("default")],
            ..Default::default()
        }],
    );
    let policies = [deny.clone()];
    assert_eq!(
        verdict(&policies, &conn(Some(&sleep))),
        denied_by("deny-default")
    );
    deny.extensions = vec![unknown_extension()];
    assert_eq!(
        verdict(&[deny.clone()], &conn(Some(&sleep))),
        denied_by("deny-default")
    );
    let other = id("other", "sleep");
    assert_eq!(
        verdict(&[deny], &conn(Some(&other))),
        Verdict::Allow,
        "surely not namespace default"
    );
}

#[test]
fn a_string_match_of_no_known_form_fails_closed() {
    let sleep = id("default", "sleep");
    let shapeless = StringMatch { match_type: None };
    let allow = policy(
        "allow-shapeless",
        Action::Allow,
        vec![Match {
            not_principals: vec![shapeless.clone()],
            ..Default::default()
        }],
    );
    assert_eq!(verdict(&[allow], &conn(Some(&sleep))), no_allow());
    let deny = policy(
        "deny-shapeless",
        Action::Deny,
        vec![Match {
            not_principals: vec![shapeless],
            ..Default::default()
        }],
    );
    assert_eq!(
        verdict(&[deny], &conn(Some(&sleep))),
        denied_by("deny-shapeless")
    );
}

#[test]
fn an_unknown_action_is_a_deny() {
    let sleep = id("default", "sleep");
    let mut p = policy("future-action", Action::Allow, vec![Match::default()]);
    p.action = 7;
    assert_eq!(
        verdict(&[p.clone()], &conn(Some(&sleep))),
        denied_by("future-action")
    );
    // Unevaluable and of an unknown action: still a denial.
    p.rules[0].clauses[0].matches[0].extensions = vec![unknown_extension()];
    assert_eq!(
        verdict(&[p], &conn(Some(&sleep))),
        denied_by("future-action")
    );
}

#[test]
fn policy_matches_follows_the_action() {
    let sleep = id("default", "sleep");
    let unknown = Authorization {
        scope: Scope::Namespace as i32,
        rules: vec![Rule {
            clauses: vec![Clause {
                matches: vec![Match {
                    extensions: vec![unknown_extension()],
                    ..Default::default()
                }],
            }],
        }],
        ..Default::default()
    };
    assert_eq!(policy_match(&unknown, &conn(Some(&sleep))), None);
    assert!(!policy_matches(&unknown, &conn(Some(&sleep))), "ALLOW");
    let deny = Authorization {
        action: Action::Deny as i32,
        ..unknown
    };
    assert!(policy_matches(&deny, &conn(Some(&sleep))), "DENY");
}
