//! Which DENYs become kernel entries, and which pods refuse plaintext.
use mesh_xds::proto::istio_security::{string_match::MatchType, StringMatch};

use super::*;
use crate::{
    policy::{
        eval::tests::{exact, policy},
        PolicySet,
    },
    state::view::{MeshView, ServiceInfo, WorkloadInfo},
};

fn workload(name: &str, ns: &str, ip: &str) -> WorkloadInfo {
    WorkloadInfo::new(mesh_xds::workload::Workload {
        uid: format!("Kubernetes//Pod/{ns}/{name}"),
        name: name.into(),
        namespace: ns.into(),
        service_account: name.into(),
        trust_domain: "cluster.local".into(),
        workload_name: name.into(),
        canonical_name: name.into(),
        canonical_revision: "latest".into(),
        node: "n1".into(),
        cluster_id: String::new(),
        ips: vec![ip.parse().unwrap()],
        hostname: None,
        mesh: true,
        gateway: None,
        authorization_policies: vec![],
        probe_ports: vec![],
    })
    .expect("a SPIFFE identity")
}

fn view(policies: Vec<Authorization>) -> MeshView {
    let server = workload("server", "default", "10.244.1.10");
    MeshView::new(
        "n1",
        vec![
            workload("client", "default", "10.244.1.2"),
            workload("intruder", "other", "10.244.1.3"),
            server,
        ],
        vec![ServiceInfo {
            key: "default/server.default.svc.cluster.local".into(),
            name: std::sync::Arc::new(crate::state::view::ServiceName::new(
                "server.default.svc.cluster.local",
                "server",
                "default",
            )),
            vip: "10.96.0.10:80".parse().unwrap(),
            endpoints: vec![("Kubernetes//Pod/default/server".into(), 8080)],
            waypoint: None,
            export_to: Default::default(),
            passthrough: false,
            app_protocol: 0,
            details: Default::default(),
        }],
    )
    .with_policies(PolicySet::new(policies))
}

fn pods() -> Vec<LocalPod> {
    vec![
        LocalPod {
            netns_cookie: 2,
            ip: "10.244.1.2".parse().unwrap(),
        },
        LocalPod {
            netns_cookie: 3,
            ip: "10.244.1.3".parse().unwrap(),
        },
    ]
}

fn entries(v: &MeshView) -> Vec<(u64, String, u16)> {
    let mut out: Vec<_> = compile(v, &pods())
        .into_iter()
        .map(|d| {
            let ip = crate::capture::enroll::unmapped(d.key.addr).unwrap();
            (d.key.netns_cookie, ip.to_string(), d.key.port)
        })
        .collect();
    out.sort();
    out
}

fn deny_namespace_other(ports: Vec<u32>) -> Authorization {
    policy(
        "deny-other",
        Action::Deny,
        vec![Match {
            namespaces: vec![exact("other")],
            destination_ports: ports,
            ..Default::default()
        }],
    )
}

#[test]
fn a_namespace_deny_compiles_for_the_matching_source_only() {
    let v = view(vec![deny_namespace_other(vec![])]);
    // cookie 3 (namespace other) may not reach anything in default, on any
    // port; cookie 2 (namespace default) is untouched. The VIP port whose
    // only endpoint is denied is denied too.
    assert_eq!(
        entries(&v),
        vec![
            (3, "10.244.1.10".into(), 0),
            (3, "10.244.1.2".into(), 0),
            (3, "10.96.0.10".into(), 80),
        ]
    );
}

#[test]
fn a_workload_behind_its_own_waypoint_gets_no_kernel_deny() {
    use crate::state::details::{Waypoint, WaypointName};
    let v = view(vec![deny_namespace_other(vec![])]);
    let mut workloads: Vec<WorkloadInfo> = v.workloads().cloned().collect();
    for w in &mut workloads {
        if w.workload_name == "server" {
            w.waypoint = Some(Waypoint {
                name: WaypointName::Address("10.244.2.9".parse().unwrap()),
                resolved: Some("10.244.2.9:15008".parse().unwrap()),
            });
        }
    }
    let v = MeshView::new("n1", workloads, v.services().cloned().collect())
        .with_policies(PolicySet::new(vec![deny_namespace_other(vec![])]));
    // The server is reached through its waypoint, whose identity its
    // policies see: only the client pod keeps a kernel deny.
    assert_eq!(entries(&v), vec![(3, "10.244.1.2".into(), 0)]);
}

#[test]
fn port_lists_compile_per_port_and_the_vip_follows_the_target_port() {
    let v = view(vec![deny_namespace_other(vec![8080])]);
    assert_eq!(
        entries(&v),
        vec![
            (3, "10.244.1.10".into(), 8080),
            (3, "10.244.1.2".into(), 8080),
            (3, "10.96.0.10".into(), 80),
        ]
    );
    let v = view(vec![deny_namespace_other(vec![9999])]);
    assert!(!entries(&v).iter().any(|(_, ip, _)| ip == "10.96.0.10"));
}

#[test]
fn not_ports_dry_run_and_allow_stay_in_the_proxy() {
    let mut not_ports = deny_namespace_other(vec![]);
    not_ports.rules[0].clauses[0].matches[0].not_destination_ports = vec![80];
    // "all but 80" cannot be entries for the pod addresses; the VIP's only
    // endpoint port (8080) is among the denied ones, so the VIP port is.
    assert_eq!(
        entries(&view(vec![not_ports])),
        vec![(3, "10.96.0.10".into(), 80)]
    );
    let mut dry = deny_namespace_other(vec![]);
    dry.dry_run = true;
    assert!(entries(&view(vec![dry])).is_empty());
    let allow = policy("a", Action::Allow, vec![Match::default()]);
    assert!(entries(&view(vec![allow])).is_empty());
}

#[test]
fn plaintext_denial_follows_strict_and_allow_sets() {
    let presence = StringMatch {
        match_type: Some(MatchType::Presence(mesh_xds::proto::wkt::Empty {})),
    };
    let strict = policy(
        "strict",
        Action::Deny,
        vec![Match {
            not_principals: vec![presence],
            ..Default::default()
        }],
    );
    assert!(plaintext_always_denied(&[&strict]));
    let allow_ns = policy(
        "ns",
        Action::Allow,
        vec![Match {
            namespaces: vec![exact("default")],
            ..Default::default()
        }],
    );
    assert!(plaintext_always_denied(&[&allow_ns]));
    let allow_ips = policy(
        "ips",
        Action::Allow,
        vec![Match {
            source_ips: vec![crate::policy::eval::tests::cidr("10.0.0.0/8")],
            ..Default::default()
        }],
    );
    assert!(!plaintext_always_denied(&[&allow_ns, &allow_ips]));
    assert!(!plaintext_always_denied(&[]));
}

fn deny_intruder_account() -> Authorization {
    policy(
        "deny-intruder",
        Action::Deny,
        vec![Match {
            service_accounts: vec![mesh_xds::proto::istio_security::ServiceAccountMatch {
                namespace: "other".into(),
                service_account: "intruder".into(),
            }],
            ..Default::default()
        }],
    )
}

#[test]
fn a_service_account_deny_compiles_for_that_account_only() {
    let v = view(vec![deny_intruder_account()]);
    assert_eq!(
        entries(&v),
        vec![
            (3, "10.244.1.10".into(), 0),
            (3, "10.244.1.2".into(), 0),
            (3, "10.96.0.10".into(), 80),
        ]
    );
}

#[test]
fn an_unevaluable_deny_compiles_for_every_source() {
    let mut deny = policy("deny-unknown", Action::Deny, vec![Match::default()]);
    deny.rules[0].clauses[0].matches[0].extensions =
        vec![mesh_xds::proto::istio_workload::Extension {
            name: "mesh.unknown-field/14".into(),
            config: None,
        }];
    let v = view(vec![deny]);
    let sources: BTreeSet<u64> = entries(&v).into_iter().map(|(c, _, _)| c).collect();
    assert_eq!(sources, BTreeSet::from([2, 3]), "fails closed for everyone");
}

#[test]
fn plaintext_and_service_accounts_or_unknown_conditions() {
    let mut allow_sa = deny_intruder_account();
    allow_sa.action = Action::Allow as i32;
    assert!(
        plaintext_always_denied(&[&allow_sa]),
        "a service account needs an identity"
    );
    let mut allow_unknown = policy("allow-unknown", Action::Allow, vec![Match::default()]);
    assert!(!plaintext_always_denied(&[&allow_unknown]), "allows all");
    allow_unknown.rules[0].clauses[0].matches[0].extensions =
        vec![mesh_xds::proto::istio_workload::Extension {
            name: "io.example/x".into(),
            config: None,
        }];
    assert!(
        plaintext_always_denied(&[&allow_unknown]),
        "an ALLOW it cannot evaluate admits nobody"
    );
}
