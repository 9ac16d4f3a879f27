use std::collections::HashMap;

use envoy_types::pb::{
    envoy::config::{cluster::v3::Cluster, core::v3::Metadata},
    google::protobuf::{value::Kind, ListValue, Struct, Value},
};
use prost::Message;

use super::cluster_bytes;

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// A cluster whose metadata holds a many-field Struct, built afresh (new
/// HashMaps, new hash seeds) on every call.
fn cluster() -> Cluster {
    let entry = Struct {
        fields: ["host", "name", "namespace", "a", "b", "c", "d", "e"]
            .iter()
            .map(|k| (k.to_string(), string(&format!("{k}-value"))))
            .collect::<HashMap<_, _>>(),
    };
    let services = Struct {
        fields: HashMap::from([(
            "services".to_string(),
            Value {
                kind: Some(Kind::ListValue(ListValue {
                    values: vec![Value {
                        kind: Some(Kind::StructValue(entry)),
                    }],
                })),
            },
        )]),
    };
    Cluster {
        name: "outbound|80||www.googleapis.com".into(),
        metadata: Some(Metadata {
            filter_metadata: HashMap::from([
                ("istio".to_string(), services.clone()),
                ("other".to_string(), services),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn the_same_cluster_always_encodes_to_the_same_bytes() {
    let first = cluster_bytes(&cluster());
    for _ in 0..50 {
        assert_eq!(cluster_bytes(&cluster()), first);
    }
}

#[test]
fn the_canonical_bytes_decode_to_the_cluster() {
    let c = cluster();
    assert_eq!(Cluster::decode(cluster_bytes(&c).as_slice()).unwrap(), c);
    let plain = Cluster {
        name: "no-metadata".into(),
        ..Default::default()
    };
    assert_eq!(cluster_bytes(&plain), plain.encode_to_vec());
}
