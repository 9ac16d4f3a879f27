//! What istiod (or a newer istiod) may send decodes without a NACK: an
//! Address of a kind this build does not know is kept as received, the
//! fields Istio added over time decode with their upstream numbers, and a
//! policy field this build does not declare is recorded so its rule can
//! fail closed.
use mesh_xds::{
    client::decode_resource,
    proto::{
        envoy_discovery::Resource,
        istio_security::{Authorization, Match, ServiceAccountMatch},
        istio_workload::{
            address, gateway_address::Destination, Address, AppProtocol, GatewayAddress,
            NamespacedHostname, Port, Service,
        },
        to_any, wkt,
    },
    XdsResource, ADDRESS_TYPE_URL, AUTHORIZATION_TYPE_URL,
};

fn resource(type_url: &str, name: &str, value: Vec<u8>) -> Resource {
    Resource {
        name: name.into(),
        version: "1".into(),
        resource: Some(wkt::Any {
            type_url: type_url.into(),
            value,
        }),
        ..Default::default()
    }
}

#[test]
fn an_address_of_an_unknown_kind_is_kept_not_rejected() {
    // Address { 3: <bytes> }: a oneof variant this build does not declare.
    let value = vec![3 << 3 | 2, 3, b'n', b'e', b'w'];
    let got = decode_resource(
        ADDRESS_TYPE_URL,
        &resource(ADDRESS_TYPE_URL, "x/new", value.clone()),
    )
    .expect("not a NACK");
    match got {
        XdsResource::Other(any) => assert_eq!(any.value, value),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_service_with_a_hostname_waypoint_and_app_protocol_decodes() {
    let svc = Service {
        name: "reviews".into(),
        namespace: "default".into(),
        hostname: "reviews.default.svc.cluster.local".into(),
        ports: vec![Port {
            service_port: 9080,
            target_port: 9080,
            app_protocol: AppProtocol::Http2 as i32,
        }],
        waypoint: Some(GatewayAddress {
            destination: Some(Destination::Hostname(NamespacedHostname {
                namespace: "default".into(),
                hostname: "waypoint.default.svc.cluster.local".into(),
            })),
            hbone_mtls_port: 15008,
        }),
        canonical: true,
        visibility: 1,
        ..Default::default()
    };
    let any = to_any(
        ADDRESS_TYPE_URL,
        &Address {
            r#type: Some(address::Type::Service(svc.clone())),
        },
    );
    let got = decode_resource(
        ADDRESS_TYPE_URL,
        &resource(ADDRESS_TYPE_URL, "default/reviews", any.value),
    )
    .unwrap();
    assert_eq!(got, XdsResource::Service(svc));
}

#[test]
fn an_undeclared_match_field_is_recorded_on_its_match() {
    let m = Match {
        service_accounts: vec![ServiceAccountMatch {
            namespace: "default".into(),
            service_account: "sleep".into(),
        }],
        ..Default::default()
    };
    let mut match_bytes = to_any("", &m).value;
    // Field 20, varint 1: the key 20 << 3 = 160 is the varint a0 01.
    match_bytes.extend([0xa0, 0x01, 1]);
    let clause = [
        vec![2 << 3 | 2, u8::try_from(match_bytes.len()).unwrap()],
        match_bytes,
    ]
    .concat();
    let rule = [
        vec![1 << 3 | 2, u8::try_from(clause.len()).unwrap()],
        clause,
    ]
    .concat();
    let head = to_any(
        "",
        &Authorization {
            name: "p".into(),
            namespace: "default".into(),
            ..Default::default()
        },
    )
    .value;
    let value = [
        head,
        vec![5 << 3 | 2, u8::try_from(rule.len()).unwrap()],
        rule,
    ]
    .concat();
    let got = decode_resource(
        AUTHORIZATION_TYPE_URL,
        &resource(AUTHORIZATION_TYPE_URL, "default/p", value),
    )
    .expect("not a NACK");
    let XdsResource::Authorization(a) = got else {
        panic!("{got:?}")
    };
    let decoded = &a.rules[0].clauses[0].matches[0];
    assert_eq!(decoded.service_accounts, m.service_accounts);
    let names: Vec<&str> = decoded.extensions.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["mesh.unknown-field/20"]);
}
