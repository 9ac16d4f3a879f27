//! The view built from Address resources: ServiceEntry hosts and their
//! endpoints outside the mesh.
use std::collections::HashMap;

use mesh_xds::proto::istio_workload::{
    NetworkAddress, Port, PortList, Service, TunnelProtocol, Workload,
};

use super::{
    view::{EndpointAddress, ExportTo, ServiceKind},
    xds::build,
};

fn port(service_port: u32, target_port: u32) -> Port {
    Port {
        service_port,
        target_port,
        ..Default::default()
    }
}

fn member(key: &str, ports: Vec<Port>) -> HashMap<String, PortList> {
    HashMap::from([(key.to_string(), PortList { ports })])
}

fn service(name: &str, hostname: &str, vip: [u8; 4], export_to: &[&str]) -> Service {
    Service {
        name: name.into(),
        namespace: "default".into(),
        hostname: hostname.into(),
        addresses: vec![NetworkAddress {
            network: String::new(),
            address: vip.to_vec(),
            ..Default::default()
        }],
        ports: vec![port(80, 80), port(443, 443)],
        export_to: export_to.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn entries_keep_their_endpoints_outside_the_mesh_and_mesh_workloads_need_an_identity() {
    let google = "default/www.googleapis.com";
    let dns_endpoint = Workload {
        uid: "se/google".into(),
        namespace: "default".into(),
        hostname: "www.googleapis.com".into(),
        services: member(google, vec![port(80, 0), port(443, 8443)]),
        ..Default::default()
    };
    let static_endpoint = Workload {
        uid: "se/static".into(),
        namespace: "default".into(),
        addresses: vec![vec![192, 0, 2, 10]],
        services: member("default/api.static.test", vec![port(80, 8080)]),
        ..Default::default()
    };
    // Captured but without an identity: not a workload the agent can use.
    let broken_pod = Workload {
        uid: "Kubernetes//Pod/default/broken".into(),
        namespace: "default".into(),
        addresses: vec![vec![10, 244, 1, 50]],
        tunnel_protocol: TunnelProtocol::Hbone as i32,
        ..Default::default()
    };
    let pod = Workload {
        uid: "Kubernetes//Pod/default/web".into(),
        namespace: "default".into(),
        addresses: vec![vec![10, 244, 1, 2]],
        tunnel_protocol: TunnelProtocol::Hbone as i32,
        trust_domain: "cluster.local".into(),
        service_account: "web".into(),
        services: member(
            "default/web.default.svc.cluster.local",
            vec![port(80, 8080)],
        ),
        ..Default::default()
    };
    let mut passthrough = service("db", "db.example.com", [240, 240, 0, 3], &["~"]);
    passthrough.passthrough = true;
    let services = [
        service(
            "googleapis",
            "www.googleapis.com",
            [240, 240, 0, 1],
            &["default"],
        ),
        service("static", "api.static.test", [240, 240, 0, 2], &[]),
        passthrough,
        service("web", "web.default.svc.cluster.local", [10, 96, 0, 5], &[]),
    ];
    let names = ["a", "b", "c", "d"];
    let svc_refs: Vec<(&str, &Service)> = names.iter().copied().zip(services.iter()).collect();
    let workloads = [dns_endpoint, static_endpoint, broken_pod, pod];
    let w_refs: Vec<(&str, &Workload)> = workloads.iter().map(|w| (w.uid.as_str(), w)).collect();
    let view = build("n1", &w_refs, &svc_refs);

    assert_eq!(view.workload_count(), 1, "only the pod with an identity");
    assert!(view
        .workload_by_ip("10.244.1.50".parse().unwrap())
        .is_none());
    assert!(
        view.workload_by_ip("192.0.2.10".parse().unwrap()).is_none(),
        "an external endpoint is no workload"
    );
    assert_eq!(
        view.external_endpoint("se/google").unwrap().address,
        EndpointAddress::Hostname("www.googleapis.com".into())
    );
    assert_eq!(
        view.external_endpoint("se/static").unwrap().address,
        EndpointAddress::Ips(vec!["192.0.2.10".parse().unwrap()])
    );
    assert!(view
        .external_endpoint("Kubernetes//Pod/default/broken")
        .is_none());

    let google = view.service("240.240.0.1:443".parse().unwrap()).unwrap();
    assert_eq!(google.endpoints, vec![("se/google".to_string(), 8443)]);
    assert_eq!(google.name.kind, ServiceKind::External);
    assert_eq!(google.name.name, "www.googleapis.com");
    assert_eq!(
        google.export_to,
        ExportTo::Namespaces(vec!["default".into()])
    );
    let google80 = view.service("240.240.0.1:80".parse().unwrap()).unwrap();
    assert_eq!(google80.endpoints, vec![("se/google".to_string(), 80)]);

    let db = view.service("240.240.0.3:80".parse().unwrap()).unwrap();
    assert!(db.passthrough);
    assert_eq!(db.export_to, ExportTo::Namespaces(vec![]), "~ is nobody");
    assert!(!db.export_to.visible_to(Some("default")));

    let web = view.service("10.96.0.5:80".parse().unwrap()).unwrap();
    assert_eq!(web.name.name, "web");
    assert_eq!(
        web.name.kind,
        ServiceKind::Kubernetes {
            domain: "cluster.local".into()
        }
    );
    assert_eq!(web.export_to, ExportTo::All);
    assert!(!web.passthrough);
}

#[test]
fn export_to_from_the_wire() {
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(ExportTo::from_xds(&[]), ExportTo::All);
    assert_eq!(ExportTo::from_xds(&names(&["a", "*"])), ExportTo::All);
    let only_a = ExportTo::from_xds(&names(&["a"]));
    assert!(only_a.visible_to(Some("a")));
    assert!(!only_a.visible_to(Some("b")));
    assert!(
        !only_a.visible_to(None),
        "an unknown source sees no scoped service"
    );
    assert!(ExportTo::All.visible_to(None));
}

#[test]
fn the_kind_of_a_service_follows_its_hostnames_structure() {
    assert_eq!(
        ServiceKind::of("reviews.bookinfo.svc.cluster.local", "reviews", "bookinfo"),
        ServiceKind::Kubernetes {
            domain: "cluster.local".into()
        }
    );
    for (host, name, ns) in [
        ("www.googleapis.com", "googleapis", "default"),
        ("reviews.bookinfo.svc.", "reviews", "bookinfo"),
        ("reviews.other.svc.cluster.local", "reviews", "bookinfo"),
        ("*.example.com", "wild", "default"),
    ] {
        assert_eq!(
            ServiceKind::of(host, name, ns),
            ServiceKind::External,
            "{host}"
        );
    }
}

/// A service's endpoints are the workloads naming it, in resource order,
/// each with its own target port; a workload in two services is an
/// endpoint of both, one naming neither is in none (the endpoints come
/// from a per-service index of the workloads, built once per view).
#[test]
fn endpoints_are_the_members_of_each_service_in_resource_order() {
    let (a, b) = (
        "default/a.default.svc.cluster.local",
        "default/b.default.svc.cluster.local",
    );
    let pod = |uid: &str, last: u8, services: HashMap<String, PortList>| Workload {
        uid: uid.into(),
        namespace: "default".into(),
        addresses: vec![vec![10, 244, 1, last]],
        tunnel_protocol: TunnelProtocol::Hbone as i32,
        trust_domain: "cluster.local".into(),
        service_account: "sa".into(),
        services,
        ..Default::default()
    };
    let mut both = member(a, vec![port(80, 8082)]);
    both.extend(member(b, vec![port(80, 9082), port(443, 9443)]));
    let workloads = [
        pod("p1", 1, member(b, vec![port(80, 9081)])),
        pod("p2", 2, both),
        pod("p3", 3, HashMap::new()),
        pod("p4", 4, member(a, vec![port(80, 0)])),
        pod("p5", 5, member(a, vec![port(80, 8085)])),
    ];
    let services = [
        service("a", "a.default.svc.cluster.local", [10, 96, 0, 1], &[]),
        service("b", "b.default.svc.cluster.local", [10, 96, 0, 2], &[]),
    ];
    let svc_refs: Vec<(&str, &Service)> = services.iter().map(|s| (s.name.as_str(), s)).collect();
    let w_refs: Vec<(&str, &Workload)> = workloads.iter().map(|w| (w.uid.as_str(), w)).collect();
    let view = build("n1", &w_refs, &svc_refs);
    let endpoints = |vip: &str| {
        view.service(vip.parse().unwrap())
            .unwrap()
            .endpoints
            .clone()
    };
    let e = |list: &[(&str, u16)]| -> Vec<(String, u16)> {
        list.iter().map(|(u, p)| (u.to_string(), *p)).collect()
    };
    assert_eq!(
        endpoints("10.96.0.1:80"),
        e(&[("p2", 8082), ("p4", 80), ("p5", 8085)])
    );
    assert!(endpoints("10.96.0.1:443").is_empty());
    assert_eq!(endpoints("10.96.0.2:80"), e(&[("p1", 9081), ("p2", 9082)]));
    assert_eq!(endpoints("10.96.0.2:443"), e(&[("p2", 9443)]));
}
