use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::state::{
    fixtures::{view, workload},
    view::WorkloadInfo,
};

/// [`view`] plus a waypoint pod `wp` (not captured) on n2 that the
/// service uses.
fn view_with_waypoint() -> MeshView {
    let base = view();
    let mut workloads: Vec<WorkloadInfo> = base.workloads().cloned().collect();
    workloads.push(workload("wp", "10.244.2.9", "n2", false));
    let services = base
        .services()
        .cloned()
        .map(|mut s| {
            s.waypoint = Some("10.244.2.9:15008".parse().unwrap());
            s
        })
        .collect();
    MeshView::new("n1", workloads, services)
}

#[test]
fn service_with_waypoint_is_tunnelled_to_the_waypoint_with_the_vip_as_authority() {
    let view = view_with_waypoint();
    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let r = resolve(&view, "10.244.1.2".parse().unwrap(), vip);
    assert_eq!(
        r.route,
        Route::Hbone {
            gateway: "10.244.2.9:15008".parse().unwrap(),
            authority: vip,
            src: "spiffe://cluster.local/ns/default/sa/a".parse().unwrap(),
            dst: "spiffe://cluster.local/ns/default/sa/wp".parse().unwrap(),
        }
    );
    assert_eq!(r.service.unwrap().name, "svc");
    // A pod address is not a service: no waypoint (service-addressed only).
    assert!(matches!(
        route(
            &view,
            "10.244.1.2".parse().unwrap(),
            "10.244.1.3:8080".parse().unwrap()
        ),
        Route::Local { .. }
    ));
    // No kernel deny is compiled for a VIP the waypoint fronts.
    assert_eq!(view.service_endpoints().count(), 0);
}

#[test]
fn the_waypoints_own_traffic_to_the_vip_is_not_sent_back_to_it() {
    let view = view_with_waypoint();
    let r = resolve(
        &view,
        "10.244.2.9".parse().unwrap(),
        "10.96.0.10:80".parse().unwrap(),
    );
    assert!(!matches!(
        r.route,
        Route::Hbone { gateway, .. } if gateway.port() == 15008 && gateway.ip() == "10.244.2.9".parse::<IpAddr>().unwrap()
    ));
}

/// [`view`] with waypoint pod `wp` on n2 attached to workload `b` (a pod
/// of this node), `resolved` as given.
fn view_with_workload_waypoint(resolved: Option<&str>) -> MeshView {
    use crate::state::details::{Waypoint, WaypointName};
    let base = view();
    let mut workloads: Vec<WorkloadInfo> = base.workloads().cloned().collect();
    for w in &mut workloads {
        if w.workload_name == "b" {
            w.waypoint = Some(Waypoint {
                name: WaypointName::Hostname {
                    namespace: "default".into(),
                    hostname: "wp.default.svc.cluster.local".into(),
                },
                resolved: resolved.map(|a| a.parse().unwrap()),
            });
        }
    }
    workloads.push(workload("wp", "10.244.2.9", "n2", false));
    MeshView::new("n1", workloads, base.services().cloned().collect())
}

#[test]
fn a_workload_with_its_own_waypoint_is_reached_through_it_by_pod_address() {
    let view = view_with_workload_waypoint(Some("10.244.2.9:15008"));
    let pod_b: SocketAddr = "10.244.1.3:8080".parse().unwrap();
    // b runs on this node: still through its waypoint, as ztunnel does.
    assert_eq!(
        route(&view, "10.244.1.2".parse().unwrap(), pod_b),
        Route::Hbone {
            gateway: "10.244.2.9:15008".parse().unwrap(),
            authority: pod_b,
            src: "spiffe://cluster.local/ns/default/sa/a".parse().unwrap(),
            dst: "spiffe://cluster.local/ns/default/sa/wp".parse().unwrap(),
        }
    );
    // The waypoint's own connection to b goes straight there.
    assert_eq!(
        route(&view, "10.244.2.9".parse().unwrap(), pod_b),
        Route::Local { dst: pod_b }
    );
    // Other pods keep their direct routes.
    assert!(matches!(
        route(
            &view,
            "10.244.1.2".parse().unwrap(),
            "10.244.2.2:9080".parse().unwrap()
        ),
        Route::Hbone { dst, .. } if dst == "spiffe://cluster.local/ns/default/sa/c".parse().unwrap()
    ));
}

#[test]
fn a_workload_waypoint_that_resolves_to_nothing_refuses_instead_of_bypassing() {
    for resolved in [None, Some("0.0.0.0:15008"), Some("10.244.9.9:15008")] {
        let view = view_with_workload_waypoint(resolved);
        let r = route(
            &view,
            "10.244.1.2".parse().unwrap(),
            "10.244.1.3:8080".parse().unwrap(),
        );
        assert!(
            matches!(&r, Route::Refuse(RefuseReason::UnknownWorkloadWaypoint { waypoint, .. })
                if waypoint.contains("wp.default.svc.cluster.local")),
            "{resolved:?}: {r:?}"
        );
    }
}

#[test]
fn cross_node_mesh_traffic_goes_over_hbone_with_both_identities() {
    let route = route(
        &view(),
        "10.244.1.2".parse().unwrap(),
        "10.244.2.2:9080".parse().unwrap(),
    );
    let Route::Hbone {
        gateway,
        authority,
        src,
        dst,
    } = route
    else {
        panic!("{route:?}")
    };
    // The fixture's workloads carry a `network_gateway` (another network's
    // gateway): it is used as given.
    assert_eq!(gateway, "10.0.0.2:15008".parse().unwrap());
    assert_eq!(authority, "10.244.2.2:9080".parse().unwrap());
    assert_eq!(src.to_string(), "spiffe://cluster.local/ns/default/sa/a");
    assert_eq!(dst.to_string(), "spiffe://cluster.local/ns/default/sa/c");
}

#[test]
fn same_node_unknown_and_non_mesh_destinations_go_direct() {
    let v = view();
    let a: IpAddr = "10.244.1.2".parse().unwrap();
    for dst in ["10.244.1.3:80", "192.0.2.1:443", "10.244.2.3:80"] {
        let dst: SocketAddr = dst.parse().unwrap();
        assert!(
            matches!(route(&v, a, dst), Route::Local { dst: d } | Route::Passthrough { dst: d, .. } if d == dst),
            "{dst}"
        );
    }
}

#[test]
fn service_vip_is_spread_round_robin_over_endpoints_with_target_port() {
    let v = view();
    let a: IpAddr = "10.244.1.2".parse().unwrap();
    let vip: SocketAddr = "10.96.0.10:80".parse().unwrap();
    let mut seen = vec![];
    for _ in 0..4 {
        match route(&v, a, vip) {
            Route::Local { dst } | Route::Passthrough { dst, .. } => seen.push(dst.to_string()),
            Route::Hbone { authority, .. } => seen.push(authority.to_string()),
            other => panic!("{other:?}"),
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "10.244.1.3:8080",
            "10.244.1.3:8080",
            "10.244.2.2:8080",
            "10.244.2.2:8080"
        ]
    );
}

#[test]
fn resolve_names_the_service_only_for_vips_and_keeps_routing() {
    let v = view();
    let a: IpAddr = "10.244.1.2".parse().unwrap();
    let via_vip = resolve(&v, a, "10.96.0.10:80".parse().unwrap());
    assert_eq!(via_vip.service.as_ref().unwrap().name, "svc");
    assert!(via_vip.endpoint().is_some());
    let direct = resolve(&v, a, "10.244.2.2:9080".parse().unwrap());
    assert_eq!(direct.service, None);
    assert_eq!(
        direct.route,
        route(&v, a, "10.244.2.2:9080".parse().unwrap())
    );
}

#[test]
fn inbound_service_is_guessed_from_workload_and_target_port() {
    let v = view();
    let b = "Kubernetes//Pod/default/b";
    assert_eq!(v.guess_service(b, 8080).unwrap().name, "svc");
    assert_eq!(v.guess_service(b, 9999), None);
    assert_eq!(v.guess_service("Kubernetes//Pod/default/a", 8080), None);
}

#[test]
fn passthrough_and_refusal_say_why() {
    let v = view();
    let a: IpAddr = "10.244.1.2".parse().unwrap();
    let c: SocketAddr = "10.244.2.2:9080".parse().unwrap();
    let outside: SocketAddr = "192.0.2.1:443".parse().unwrap();
    assert_eq!(
        route(&v, a, outside),
        Route::Passthrough {
            dst: outside,
            why: PassthroughReason::OutsideMesh
        }
    );
    // A source the mesh does not know has no identity to present.
    let unknown: IpAddr = "192.0.2.9".parse().unwrap();
    assert_eq!(
        route(&v, unknown, c),
        Route::Passthrough {
            dst: c,
            why: PassthroughReason::NoSourceIdentity
        }
    );
    // A remote mesh pod on this network (no `network_gateway`, as istiod
    // sends it): tunnelled to its own listener, `<pod IP>:15008`.
    let mut peer = workload("peer", "10.244.2.8", "n2", true);
    peer.gateway = None;
    let v = MeshView::new(
        "n1",
        vec![workload("a", "10.244.1.2", "n1", true), peer],
        vec![],
    );
    let r = route(&v, a, "10.244.2.8:80".parse().unwrap());
    let Route::Hbone {
        gateway, authority, ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(gateway, "10.244.2.8:15008".parse().unwrap());
    assert_eq!(authority, "10.244.2.8:80".parse().unwrap());
}

mod service_entries {
    use super::*;
    use crate::state::fixtures::entries_view;

    const A: &str = "10.244.1.2";
    const OTHER_NS: &str = "10.244.1.9";

    fn go(view: &MeshView, src: &str, dst: &str) -> Resolved {
        resolve(view, src.parse().unwrap(), dst.parse().unwrap())
    }

    #[test]
    fn a_dns_entry_resolves_its_endpoint_name_and_names_the_host() {
        let v = entries_view();
        let r = go(&v, A, "240.240.0.1:80");
        assert_eq!(
            r.route,
            Route::Resolve {
                host: "www.googleapis.com".into(),
                port: 80
            }
        );
        assert_eq!(r.endpoint(), None, "no address before resolution");
        let service = r.service.unwrap();
        assert_eq!(service.hostname, "www.googleapis.com");
        assert_eq!(service.name, "www.googleapis.com", "Istio names the host");
        assert_eq!(service.namespace, "default");
    }

    #[test]
    fn a_namespace_the_entry_is_not_exported_to_sees_a_plain_address() {
        let v = entries_view();
        let vip: SocketAddr = "240.240.0.1:80".parse().unwrap();
        let r = go(&v, OTHER_NS, "240.240.0.1:80");
        assert_eq!(
            r.route,
            Route::Passthrough {
                dst: vip,
                why: PassthroughReason::OutsideMesh
            }
        );
        assert_eq!(r.service, None, "as if the entry did not exist");
        // An unknown source sees only what is exported to all.
        assert_eq!(go(&v, "192.0.2.99", "240.240.0.1:80").service, None);
        assert!(go(&v, "192.0.2.99", "240.240.0.2:80").service.is_some());
        // exportTo ["~"]: nobody.
        assert_eq!(go(&v, A, "240.240.0.6:80").service, None);
    }

    #[test]
    fn a_static_entry_goes_direct_to_its_endpoint_address() {
        let v = entries_view();
        let r = go(&v, A, "240.240.0.2:80");
        assert_eq!(
            r.route,
            Route::Passthrough {
                dst: "192.0.2.10:8080".parse().unwrap(),
                why: PassthroughReason::ExternalEndpoint
            }
        );
        assert_eq!(r.service.unwrap().name, "api.static.test");
    }

    #[test]
    fn an_entry_without_resolution_goes_where_the_client_dialled() {
        let v = entries_view();
        for dst in ["240.240.0.3:5432", "240.240.0.4:443"] {
            let r = go(&v, A, dst);
            assert_eq!(
                r.route,
                Route::Passthrough {
                    dst: dst.parse().unwrap(),
                    why: PassthroughReason::ServiceEntry
                }
            );
            assert!(r.service.is_some(), "telemetry still names the service");
        }
        // Another port of the same address is no service port.
        assert_eq!(go(&v, A, "240.240.0.3:80").service, None);
    }

    #[test]
    fn an_entry_whose_endpoints_are_gone_is_refused() {
        let v = entries_view();
        let mut services: Vec<ServiceInfo> = v.services().cloned().collect();
        let workloads: Vec<WorkloadInfo> = v.workloads().cloned().collect();
        for s in &mut services {
            s.export_to = crate::state::view::ExportTo::All;
        }
        // The endpoint workloads are not in this view.
        let v = MeshView::new("n1", workloads, services);
        assert!(matches!(
            go(&v, A, "240.240.0.1:80").route,
            Route::Refuse(RefuseReason::NoEndpoints { .. })
        ));
    }

    #[test]
    fn a_mesh_internal_entry_selecting_pods_routes_like_a_service() {
        let v = entries_view();
        let mut services: Vec<ServiceInfo> = v.services().cloned().collect();
        services.push(crate::state::fixtures::entry(
            "internal.example",
            "240.240.0.7:80",
            vec![("Kubernetes//Pod/default/c".into(), 9090)],
        ));
        let v = MeshView::new("n1", v.workloads().cloned().collect(), services);
        let r = go(&v, A, "240.240.0.7:80");
        assert!(
            matches!(r.route, Route::Hbone { authority, .. } if authority == "10.244.2.2:9090".parse().unwrap()),
            "{:?}",
            r.route
        );
        assert_eq!(r.service.unwrap().name, "internal.example");
    }

    #[test]
    fn a_waypoint_attached_entry_is_tunnelled_to_the_waypoint() {
        let v = entries_view();
        let mut workloads: Vec<WorkloadInfo> = v.workloads().cloned().collect();
        workloads.push(workload("wp", "10.244.2.9", "n2", false));
        let mut services: Vec<ServiceInfo> = v.services().cloned().collect();
        for s in &mut services {
            if s.name.hostname == "www.googleapis.com" {
                s.waypoint = Some("10.244.2.9:15008".parse().unwrap());
            }
        }
        let v = MeshView::new("n1", workloads, services);
        let vip: SocketAddr = "240.240.0.1:80".parse().unwrap();
        let r = go(&v, A, "240.240.0.1:80");
        assert_eq!(
            r.route,
            Route::Hbone {
                gateway: "10.244.2.9:15008".parse().unwrap(),
                authority: vip,
                src: "spiffe://cluster.local/ns/default/sa/a".parse().unwrap(),
                dst: "spiffe://cluster.local/ns/default/sa/wp".parse().unwrap(),
            }
        );
        assert_eq!(r.service.unwrap().name, "www.googleapis.com");
        // Not exported to `other`: no waypoint either.
        assert_eq!(go(&v, OTHER_NS, "240.240.0.1:80").service, None);
    }
}
