//! Deterministic encoding of the resources whose prost types hold
//! protobuf maps in a `HashMap` (`google.protobuf.Struct` fields,
//! `Metadata.filter_metadata`): prost writes map entries in the map's
//! iteration order, which differs between map instances, so the same
//! resource would encode (and be versioned, [`super::resources::version_of`])
//! differently on every rebuild and in every process. istiod's Go
//! marshalling sorts map keys; this does the same.
//!
//! A protobuf map field is on the wire exactly a repeated message of
//! `{key = 1, value = 2}` entries, so mirror messages with sorted `Vec`s
//! encode bytes any decoder reads as the original. Fields may appear in
//! any order on the wire, so a resource is its other fields followed by
//! the canonical `metadata` field.
use envoy_types::pb::{
    envoy::config::{cluster::v3::Cluster, core::v3::Metadata},
    google::protobuf::{value::Kind, ListValue, Struct, Value},
};
use prost::Message;

/// `Cluster.metadata`'s field number.
const CLUSTER_METADATA_TAG: u32 = 25;

/// A Cluster's bytes, its metadata's map entries sorted by key.
pub fn cluster_bytes(cluster: &Cluster) -> Vec<u8> {
    let Some(metadata) = &cluster.metadata else {
        return cluster.encode_to_vec();
    };
    let rest = Cluster {
        metadata: None,
        ..cluster.clone()
    };
    let mut bytes = rest.encode_to_vec();
    prost::encoding::message::encode(
        CLUSTER_METADATA_TAG,
        &SortedMetadata::from(metadata),
        &mut bytes,
    );
    bytes
}

#[derive(Clone, PartialEq, Message)]
struct SortedMetadata {
    #[prost(message, repeated, tag = "1")]
    filter_metadata: Vec<StructEntry>,
    #[prost(message, repeated, tag = "2")]
    typed_filter_metadata: Vec<AnyEntry>,
}

#[derive(Clone, PartialEq, Message)]
struct StructEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<SortedStruct>,
}

#[derive(Clone, PartialEq, Message)]
struct AnyEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<prost_types::Any>,
}

#[derive(Clone, PartialEq, Message)]
struct SortedStruct {
    #[prost(message, repeated, tag = "1")]
    fields: Vec<ValueEntry>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueEntry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<SortedValue>,
}

#[derive(Clone, PartialEq, Message)]
struct SortedValue {
    #[prost(oneof = "SortedKind", tags = "1, 2, 3, 4, 5, 6")]
    kind: Option<SortedKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum SortedKind {
    #[prost(int32, tag = "1")]
    Null(i32),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    String(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
    #[prost(message, tag = "5")]
    Struct(SortedStruct),
    #[prost(message, tag = "6")]
    List(SortedList),
}

#[derive(Clone, PartialEq, Message)]
struct SortedList {
    #[prost(message, repeated, tag = "1")]
    values: Vec<SortedValue>,
}

impl From<&Metadata> for SortedMetadata {
    fn from(m: &Metadata) -> Self {
        let mut filter_metadata: Vec<StructEntry> = m
            .filter_metadata
            .iter()
            .map(|(key, value)| StructEntry {
                key: key.clone(),
                value: Some(value.into()),
            })
            .collect();
        filter_metadata.sort_by(|a, b| a.key.cmp(&b.key));
        let mut typed_filter_metadata: Vec<AnyEntry> = m
            .typed_filter_metadata
            .iter()
            .map(|(key, any)| AnyEntry {
                key: key.clone(),
                value: Some(prost_types::Any {
                    type_url: any.type_url.clone(),
                    value: any.value.clone(),
                }),
            })
            .collect();
        typed_filter_metadata.sort_by(|a, b| a.key.cmp(&b.key));
        SortedMetadata {
            filter_metadata,
            typed_filter_metadata,
        }
    }
}

impl From<&Struct> for SortedStruct {
    fn from(s: &Struct) -> Self {
        let mut fields: Vec<ValueEntry> = s
            .fields
            .iter()
            .map(|(key, value)| ValueEntry {
                key: key.clone(),
                value: Some(value.into()),
            })
            .collect();
        fields.sort_by(|a, b| a.key.cmp(&b.key));
        SortedStruct { fields }
    }
}

impl From<&Value> for SortedValue {
    fn from(v: &Value) -> Self {
        let kind = v.kind.as_ref().map(|k| match k {
            Kind::NullValue(n) => SortedKind::Null(*n),
            Kind::NumberValue(n) => SortedKind::Number(*n),
            Kind::StringValue(s) => SortedKind::String(s.clone()),
            Kind::BoolValue(b) => SortedKind::Bool(*b),
            Kind::StructValue(s) => SortedKind::Struct(s.into()),
            Kind::ListValue(ListValue { values }) => SortedKind::List(SortedList {
                values: values.iter().map(Into::into).collect(),
            }),
        });
        SortedValue { kind }
    }
}

#[cfg(test)]
mod tests;
