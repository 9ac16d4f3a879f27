//! The agent accepts workload discovery shaped the way istiod shapes it
//! (crate::state::istiod_shape): decoded as the xDS client decodes it, the
//! view resolves waypoints named by hostname into what routing reads,
//! drops UNHEALTHY endpoints, honours visibility and host networking, and
//! the policies evaluate `service_accounts` and fail closed on what they
//! cannot read. `stream` serves the same resources over a real Delta ADS
//! stream to the real client and checks every response is ACKed.
use std::net::{IpAddr, SocketAddr};

use mesh_xds::{
    client::decode_resource,
    proto::{istio_security::Authorization, istio_workload},
    XdsResource, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL,
};

use super::{
    istiod_shape::{self as shape, resource},
    view::MeshView,
    xds::build,
};
use crate::{
    policy::{eval::NO_ALLOW_MATCHED, Conn, PolicySet, Verdict},
    route::{resolve, RefuseReason, Route},
    state::details::WaypointName,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What the view must show of the fixture, whichever way it was built.
pub(super) fn check_view(view: &MeshView) {
    let sleep = view.workload_by_ip(ip(shape::SLEEP_IP)).expect("sleep");
    let waypoint = view
        .workload_by_ip(addr(shape::WAYPOINT_POD).ip())
        .expect("the healthy waypoint pod");

    // A waypoint named by hostname is resolved to the healthy waypoint
    // pod, and routing tunnels the VIP there.
    let reviews = view.service(addr(shape::REVIEWS_VIP)).expect("reviews");
    assert_eq!(reviews.waypoint, Some(addr(shape::WAYPOINT_POD)));
    let named = reviews.details.waypoint.as_ref().unwrap();
    assert_eq!(
        named.name,
        WaypointName::Hostname {
            namespace: "default".into(),
            hostname: shape::WAYPOINT_HOST.into()
        }
    );
    assert_eq!(
        resolve(view, ip(shape::SLEEP_IP), addr(shape::REVIEWS_VIP)).route,
        Route::Hbone {
            gateway: addr(shape::WAYPOINT_POD),
            authority: addr(shape::REVIEWS_VIP),
            src: sleep.identity.clone(),
            dst: waypoint.identity.clone(),
        }
    );
    // Port facts and the UNHEALTHY endpoint left out.
    assert_eq!(
        reviews.app_protocol,
        istio_workload::AppProtocol::Http11 as i32
    );
    assert_eq!(
        reviews.endpoints,
        vec![(shape::REVIEWS_V1_UID.to_string(), 9080)]
    );
    let details = &reviews.details;
    assert!(details.canonical && details.ingress_use_waypoint);
    assert_eq!(details.extensions, ["io.example/service"]);
    assert_eq!(details.load_balancing.as_ref().unwrap().mode, 2);
    assert_eq!(
        details.weighted_waypoints,
        [(format!("default/{}", shape::WAYPOINT_HOST), 100)]
    );

    // The workload's own waypoint, resolved the same way.
    let v1 = view.workload(shape::REVIEWS_V1_UID).unwrap();
    assert_eq!(
        v1.waypoint.as_ref().and_then(|w| w.resolved),
        Some(addr(shape::WAYPOINT_POD))
    );
    assert_eq!(v1.details.capacity, Some(2));
    assert_eq!(v1.details.locality.as_ref().unwrap().zone, "eu-west-1a");
    assert_eq!(v1.details.extensions, ["io.example/workload"]);

    // A waypoint hostname that names nothing: refused, not bypassed.
    match resolve(view, ip(shape::SLEEP_IP), addr(shape::RATINGS_VIP)).route {
        Route::Refuse(RefuseReason::UnknownWaypoint { waypoint, .. }) => {
            assert!(waypoint.ip().is_unspecified(), "{waypoint}")
        }
        other => panic!("ratings through a missing waypoint: {other:?}"),
    }

    // Visibility NAMESPACE: a VIP of namespace `secret` is no VIP for
    // pods of `default`. An address range is no VIP.
    assert!(view.service(addr(shape::INTERNAL_VIP)).is_some());
    assert!(view
        .visible_service(ip(shape::SLEEP_IP), addr(shape::INTERNAL_VIP))
        .is_none());
    assert!(view.service(addr("10.200.0.0:80")).is_none());
    assert!(view
        .services()
        .all(|s| s.key != "default/ranges.default.svc.cluster.local"));
    // A host-network workload is never found by (the node's) address.
    assert!(view.workload_by_ip(ip("10.0.0.1")).is_none());
    assert!(
        view.workload("Kubernetes//Pod/default/node-exporter")
            .unwrap()
            .details
            .host_network
    );

    // service_accounts: only default/sleep reaches details.
    let details_pod = view.workload(shape::DETAILS_UID).unwrap();
    let productpage = view.workload_by_ip(ip(shape::PRODUCTPAGE_IP)).unwrap();
    let conn = |src: &crate::state::view::WorkloadInfo| Conn {
        src_ip: src.ips.first().copied(),
        src: None,
        dst_ip: ip("10.244.1.5"),
        dst_port: 9080,
    };
    let from_sleep = Conn {
        src: Some(&sleep.identity),
        ..conn(sleep)
    };
    let from_productpage = Conn {
        src: Some(&productpage.identity),
        ..conn(productpage)
    };
    assert_eq!(
        view.policies.evaluate(details_pod, &from_sleep).verdict,
        Verdict::Allow
    );
    assert_eq!(
        view.policies
            .evaluate(details_pod, &from_productpage)
            .verdict,
        Verdict::Deny {
            policy: NO_ALLOW_MATCHED.into()
        }
    );
    // The ALLOW whose match has a field this build does not know admits
    // no one (decoded without the field, it would admit everyone).
    let ratings = view.workload(shape::RATINGS_UID).unwrap();
    assert_eq!(
        view.policies.evaluate(ratings, &from_sleep).verdict,
        Verdict::Deny {
            policy: NO_ALLOW_MATCHED.into()
        }
    );
}

/// The resources decoded as the xDS client decodes them.
pub(super) struct Decoded {
    pub workloads: Vec<(String, istio_workload::Workload)>,
    pub services: Vec<(String, istio_workload::Service)>,
    pub policies: Vec<Authorization>,
    pub skipped: usize,
}

pub(super) fn decoded() -> Decoded {
    let mut out = Decoded {
        workloads: Vec::new(),
        services: Vec::new(),
        policies: Vec::new(),
        skipped: 0,
    };
    for (name, bytes) in shape::addresses() {
        let r = resource(ADDRESS_TYPE_URL, &name, bytes);
        match decode_resource(ADDRESS_TYPE_URL, &r).expect("accepted") {
            XdsResource::Workload(w) => out.workloads.push((name, w)),
            XdsResource::Service(s) => out.services.push((name, s)),
            XdsResource::Other(_) => out.skipped += 1,
            other => panic!("{name}: {other:?}"),
        }
    }
    for (name, bytes) in shape::authorizations() {
        let r = resource(AUTHORIZATION_TYPE_URL, &name, bytes);
        match decode_resource(AUTHORIZATION_TYPE_URL, &r).expect("accepted") {
            XdsResource::Authorization(a) => out.policies.push(a),
            other => panic!("{name}: {other:?}"),
        }
    }
    out
}

/// The view as the agent of `n1` builds it from decoded resources.
fn view_of(d: &Decoded) -> MeshView {
    let w: Vec<(&str, &istio_workload::Workload)> =
        d.workloads.iter().map(|(n, w)| (n.as_str(), w)).collect();
    let s: Vec<(&str, &istio_workload::Service)> =
        d.services.iter().map(|(n, s)| (n.as_str(), s)).collect();
    build("n1", &w, &s).with_policies(PolicySet::new(d.policies.iter().cloned()))
}

/// What `/config_dump` must show of the fixture.
pub(super) fn check_dump(view: &MeshView, policies: &[Authorization]) {
    let xds = crate::admin::config_dump::XdsStatus {
        address: "http://127.0.0.1:15010",
        connected: true,
        last_error: None,
        last_update_unix_ms: 1,
    };
    let dump = crate::admin::config_dump::config_dump(view, &xds, policies.iter(), &[]);
    assert_eq!(dump["skipped"]["addresses_of_unknown_kind"], 1, "{dump}");
    let services = dump["services"].as_array().unwrap();
    let reviews = services
        .iter()
        .find(|s| s["vip"] == shape::REVIEWS_VIP)
        .unwrap();
    assert_eq!(
        reviews["waypoint"]["name"],
        format!("default/{}", shape::WAYPOINT_HOST)
    );
    assert_eq!(reviews["waypoint"]["resolved"], shape::WAYPOINT_POD);
    assert_eq!(reviews["app_protocol"], "HTTP11");
    let ratings = services
        .iter()
        .find(|s| s["vip"] == shape::RATINGS_VIP)
        .unwrap();
    assert!(ratings["waypoint"]["resolved"].is_null(), "{ratings}");
    let policies = dump["policies"].as_array().unwrap();
    let viewer = policies
        .iter()
        .find(|p| p["name"] == "details-viewer")
        .unwrap();
    assert_eq!(
        viewer["rules"][0]["clauses"][0]["matches"][0]["service_accounts"][0],
        serde_json::json!({"namespace": "default", "service_account": "sleep"})
    );
    let future = policies
        .iter()
        .find(|p| p["name"] == "allow-future")
        .unwrap();
    assert_eq!(
        future["rules"][0]["clauses"][0]["matches"][0]["extensions"][0],
        "mesh.unknown-field/14"
    );
}

#[test]
fn istiod_shaped_resources_decode_into_the_view() {
    let d = decoded();
    assert_eq!(d.skipped, 1, "the address of an unknown kind");
    assert_eq!(d.workloads.len(), 9);
    assert_eq!(d.services.len(), 6);
    let mut view = view_of(&d);
    view.skipped_addresses = d.skipped;
    check_view(&view);
    check_dump(&view, &d.policies);
}

mod stream;
