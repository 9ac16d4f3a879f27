//! Test fixture: workload discovery resources shaped the way istiod sends
//! them to a node proxy, as wire bytes — waypoints named by hostname,
//! UNHEALTHY endpoints, `app_protocol`, the Service and Workload fields
//! Istio added over time, `service_accounts` in an authorization policy,
//! plus what a newer istiod could send: an Address of an unknown kind and
//! fields this build does not declare (in a Service, a Workload and a
//! policy's Match).
//!
//! The world, seen by the agent of node `n1`:
//! - Service `waypoint` (10.96.0.50:15008): pods `waypoint-a` (UNHEALTHY,
//!   10.244.2.7) and `waypoint-b` (10.244.2.8), node n2;
//! - Service `reviews` (10.96.0.20:9080, HTTP11) with waypoint
//!   `default/waypoint.default.svc.cluster.local`: pods `reviews-v1`
//!   (10.244.2.2, its own waypoint by hostname too) and `reviews-v2`
//!   (10.244.2.3, UNHEALTHY);
//! - Service `ratings` (10.96.0.30:9080) whose waypoint hostname names no
//!   Service: pod `ratings` (10.244.2.4) with an ALLOW policy whose match
//!   has only a field this build does not declare;
//! - Service `details` (10.96.0.40:9080): pod `details` (10.244.1.5, n1)
//!   with an ALLOW policy for service account `default/sleep`;
//! - pods `sleep` (10.244.1.2) and `productpage` (10.244.1.3) on n1;
//! - pod `node-exporter` on the host network (10.0.0.1);
//! - Service `secret/internal` (10.96.0.60:80) of visibility NAMESPACE;
//! - Service `default/ranges` whose only address is 10.200.0.0/16.
use mesh_xds::proto::{
    envoy_discovery::Resource,
    istio_security::{Action, Authorization, Clause, Match, Rule, Scope, ServiceAccountMatch},
    istio_workload::{
        address, gateway_address::Destination, load_balancing, service::Visibility, Address,
        AppProtocol, Extension, GatewayAddress, IpFamilies, LoadBalancing, Locality,
        NamespacedHostname, NetworkAddress, NetworkMode, Port, PortList, Service, TunnelProtocol,
        WeightedWaypoint, Workload, WorkloadStatus,
    },
    to_any, wkt,
};

pub const WAYPOINT_HOST: &str = "waypoint.default.svc.cluster.local";
pub const REVIEWS_VIP: &str = "10.96.0.20:9080";
pub const RATINGS_VIP: &str = "10.96.0.30:9080";
pub const INTERNAL_VIP: &str = "10.96.0.60:80";
/// Where the waypoint hostname resolves: the healthy waypoint pod.
pub const WAYPOINT_POD: &str = "10.244.2.8:15008";
pub const SLEEP_IP: &str = "10.244.1.2";
pub const PRODUCTPAGE_IP: &str = "10.244.1.3";
pub const DETAILS_UID: &str = "Kubernetes//Pod/default/details";
pub const RATINGS_UID: &str = "Kubernetes//Pod/default/ratings";
pub const REVIEWS_V1_UID: &str = "Kubernetes//Pod/default/reviews-v1";

fn key(host: &str) -> String {
    format!("default/{host}")
}

fn svc_host(name: &str) -> String {
    format!("{name}.default.svc.cluster.local")
}

fn waypoint_by_hostname(host: &str) -> GatewayAddress {
    GatewayAddress {
        destination: Some(Destination::Hostname(NamespacedHostname {
            namespace: "default".into(),
            hostname: host.into(),
        })),
        hbone_mtls_port: 15008,
    }
}

fn port(p: u32, app: AppProtocol) -> Port {
    Port {
        service_port: p,
        target_port: p,
        app_protocol: app as i32,
    }
}

fn vip(ip: [u8; 4]) -> NetworkAddress {
    NetworkAddress {
        network: String::new(),
        address: ip.to_vec(),
        length: None,
    }
}

fn service(name: &str, ip: [u8; 4], p: u32) -> Service {
    Service {
        name: name.into(),
        namespace: "default".into(),
        hostname: svc_host(name),
        addresses: vec![vip(ip)],
        ports: vec![port(p, AppProtocol::Http11)],
        ..Default::default()
    }
}

fn pod(name: &str, ip: [u8; 4], node: &str, sa: &str) -> Workload {
    Workload {
        uid: format!("Kubernetes//Pod/default/{name}"),
        name: name.into(),
        namespace: "default".into(),
        addresses: vec![ip.to_vec()],
        tunnel_protocol: TunnelProtocol::Hbone as i32,
        trust_domain: "cluster.local".into(),
        service_account: sa.into(),
        node: node.into(),
        cluster_id: "Kubernetes".into(),
        canonical_name: name.into(),
        canonical_revision: "latest".into(),
        workload_name: name.into(),
        ..Default::default()
    }
}

fn member_of(mut w: Workload, service: &str, p: u32) -> Workload {
    w.services.insert(
        key(&svc_host(service)),
        PortList {
            ports: vec![port(p, AppProtocol::Http11)],
        },
    );
    w
}

fn extension(name: &str) -> Extension {
    Extension {
        name: name.into(),
        config: Some(wkt::Any {
            type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
            value: vec![10, 2, b'o', b'k'],
        }),
    }
}

/// `value` as a protobuf varint.
fn varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = u8::try_from(value & 0x7f).unwrap();
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `bytes` with field `number` (a varint, value 1) appended: a field this
/// build does not declare.
fn with_unknown_varint(mut bytes: Vec<u8>, number: u32) -> Vec<u8> {
    varint(u64::from(number) << 3, &mut bytes);
    bytes.push(1);
    bytes
}

/// Field `field` holding the length-delimited `inner` (for an `Address`,
/// its oneof kind).
fn len_field(field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(field) << 3 | 2, &mut out);
    varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// The Address resources, by resource name, as encoded `Address` bytes.
pub fn addresses() -> Vec<(String, Vec<u8>)> {
    let mut waypoint_a = member_of(
        pod("waypoint-a", [10, 244, 2, 7], "n2", "waypoint"),
        "waypoint",
        15008,
    );
    waypoint_a.status = WorkloadStatus::Unhealthy as i32;
    let waypoint_b = member_of(
        pod("waypoint-b", [10, 244, 2, 8], "n2", "waypoint"),
        "waypoint",
        15008,
    );
    let mut reviews_v1 = member_of(
        pod("reviews-v1", [10, 244, 2, 2], "n2", "reviews"),
        "reviews",
        9080,
    );
    reviews_v1.waypoint = Some(waypoint_by_hostname(WAYPOINT_HOST));
    reviews_v1.locality = Some(Locality {
        region: "eu-west".into(),
        zone: "eu-west-1a".into(),
        subzone: String::new(),
    });
    reviews_v1.network_mode = NetworkMode::Standard as i32;
    reviews_v1.capacity = Some(wkt::UInt32Value { value: 2 });
    reviews_v1.extensions = vec![extension("io.example/workload")];
    let mut reviews_v2 = member_of(
        pod("reviews-v2", [10, 244, 2, 3], "n2", "reviews"),
        "reviews",
        9080,
    );
    reviews_v2.status = WorkloadStatus::Unhealthy as i32;
    let mut ratings = member_of(
        pod("ratings", [10, 244, 2, 4], "n2", "ratings"),
        "ratings",
        9080,
    );
    ratings.authorization_policies = vec!["default/allow-future".into()];
    let mut details = member_of(
        pod("details", [10, 244, 1, 5], "n1", "details"),
        "details",
        9080,
    );
    details.authorization_policies = vec!["default/details-viewer".into()];
    let sleep = pod("sleep", [10, 244, 1, 2], "n1", "sleep");
    let productpage = pod("productpage", [10, 244, 1, 3], "n1", "productpage");
    let mut node_exporter = pod("node-exporter", [10, 0, 0, 1], "n1", "node-exporter");
    node_exporter.network_mode = NetworkMode::HostNetwork as i32;
    node_exporter.tunnel_protocol = TunnelProtocol::None as i32;

    let mut waypoint_svc = service("waypoint", [10, 96, 0, 50], 15008);
    waypoint_svc.ports = vec![port(15008, AppProtocol::Unknown)];
    let mut reviews = service("reviews", [10, 96, 0, 20], 9080);
    reviews.waypoint = Some(waypoint_by_hostname(WAYPOINT_HOST));
    reviews.load_balancing = Some(LoadBalancing {
        routing_preference: vec![
            load_balancing::Scope::Network as i32,
            load_balancing::Scope::Zone as i32,
        ],
        mode: load_balancing::Mode::Failover as i32,
        health_policy: load_balancing::HealthPolicy::OnlyHealthy as i32,
    });
    reviews.ip_families = IpFamilies::Ipv4Only as i32;
    reviews.extensions = vec![extension("io.example/service")];
    reviews.canonical = true;
    reviews.ingress_use_waypoint = true;
    reviews.weighted_waypoints = vec![WeightedWaypoint {
        destination: Some(waypoint_by_hostname(WAYPOINT_HOST)),
        weight: 100,
    }];
    let mut ratings_svc = service("ratings", [10, 96, 0, 30], 9080);
    ratings_svc.waypoint = Some(waypoint_by_hostname(
        "missing-waypoint.default.svc.cluster.local",
    ));
    let details_svc = service("details", [10, 96, 0, 40], 9080);
    let mut internal = service("internal", [10, 96, 0, 60], 80);
    internal.namespace = "secret".into();
    internal.hostname = "internal.secret.svc.cluster.local".into();
    internal.visibility = Visibility::Namespace as i32;
    let mut ranges = service("ranges", [10, 200, 0, 0], 80);
    ranges.addresses[0].length = Some(16);

    let mut out = Vec::new();
    for w in [
        waypoint_a,
        waypoint_b,
        reviews_v1,
        reviews_v2,
        ratings,
        details,
        sleep,
        productpage,
        node_exporter,
    ] {
        let name = w.uid.clone();
        // Every workload carries a field this build does not declare.
        let inner = with_unknown_varint(to_any("", &w).value, 99);
        out.push((name, len_field(1, &inner)));
    }
    for s in [
        waypoint_svc,
        reviews,
        ratings_svc,
        details_svc,
        internal,
        ranges,
    ] {
        let name = format!("{}/{}", s.namespace, s.hostname);
        let inner = with_unknown_varint(to_any("", &s).value, 98);
        out.push((name, len_field(2, &inner)));
    }
    // An Address of a kind this build does not know (oneof field 3).
    let future = len_field(3, &len_field(1, b"some-future-thing"));
    out.push(("default/future-kind".into(), future));
    // Prove the helpers encode what prost would for a known kind.
    let check = Address {
        r#type: Some(address::Type::Service(service("x", [1, 2, 3, 4], 1))),
    };
    assert_eq!(
        len_field(2, &to_any("", &service("x", [1, 2, 3, 4], 1)).value),
        to_any("", &check).value
    );
    out
}

fn sa(ns: &str, name: &str) -> ServiceAccountMatch {
    ServiceAccountMatch {
        namespace: ns.into(),
        service_account: name.into(),
    }
}

/// The Authorization resources, by resource name, as encoded bytes.
pub fn authorizations() -> Vec<(String, Vec<u8>)> {
    // `from.source.serviceAccounts: [default/sleep]`, as istiod sends it.
    let viewer = Authorization {
        name: "details-viewer".into(),
        namespace: "default".into(),
        scope: Scope::WorkloadSelector as i32,
        action: Action::Allow as i32,
        rules: vec![Rule {
            clauses: vec![Clause {
                matches: vec![Match {
                    service_accounts: vec![sa("default", "sleep")],
                    ..Default::default()
                }],
            }],
        }],
        ..Default::default()
    };
    // An ALLOW whose only match has a field this build does not declare
    // (14) and nothing else: decoded without it the match would hold for
    // everyone; it must admit no one (fail closed).
    let match_bytes = with_unknown_varint(Vec::new(), 14);
    let clause = len_field(2, &match_bytes);
    let rule = len_field(1, &clause);
    let mut allow_future = to_any(
        "",
        &Authorization {
            name: "allow-future".into(),
            namespace: "default".into(),
            scope: Scope::WorkloadSelector as i32,
            action: Action::Allow as i32,
            ..Default::default()
        },
    )
    .value;
    allow_future.extend(len_field(5, &rule));
    vec![
        ("default/details-viewer".into(), to_any("", &viewer).value),
        ("default/allow-future".into(), allow_future),
    ]
}

/// `bytes` as an xDS resource of `type_url`.
pub fn resource(type_url: &str, name: &str, bytes: Vec<u8>) -> Resource {
    Resource {
        name: name.into(),
        version: format!("v-{name}"),
        resource: Some(wkt::Any {
            type_url: type_url.into(),
            value: bytes,
        }),
        ..Default::default()
    }
}
