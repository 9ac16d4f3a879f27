//! Small constructors for the protobuf values every translation module
//! writes (durations, wrappers, percentages, `Any`, `Struct`).
use std::collections::HashMap;

use envoy_types::pb::{
    envoy::{
        config::core::v3::{config_source, AggregatedConfigSource, ApiVersion, ConfigSource},
        r#type::v3::{fractional_percent::DenominatorType, FractionalPercent},
    },
    google::protobuf::{value::Kind, Any, Duration, ListValue, Struct, UInt32Value, Value},
};

use crate::model::routing::Percent;

pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// `Some(duration)` unless zero (fields Envoy requires to be > 0).
pub fn positive_duration(d: Option<std::time::Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero()).map(duration)
}

pub fn u32v(v: u32) -> UInt32Value {
    UInt32Value { value: v }
}

pub fn any<M: prost::Message>(type_url: &str, msg: &M) -> Any {
    mesh_xds::proto::to_any(type_url, msg)
}

/// Istio's percentage (0–100, fractional) as Envoy's: `value * 10000`
/// per MILLION.
pub fn fraction(p: Percent) -> FractionalPercent {
    FractionalPercent {
        numerator: (p.value() * 10_000.0).round() as u32,
        denominator: DenominatorType::Million as i32,
    }
}

/// 100%.
pub fn all() -> FractionalPercent {
    FractionalPercent {
        numerator: 1_000_000,
        denominator: DenominatorType::Million as i32,
    }
}

/// `ads{}`, resource API V3: where RDS and EDS come from.
pub fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub fn string_value(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

pub fn list_value(items: Vec<Value>) -> Value {
    Value {
        kind: Some(Kind::ListValue(ListValue { values: items })),
    }
}

pub fn structure(fields: impl IntoIterator<Item = (String, Value)>) -> Struct {
    Struct {
        fields: fields.into_iter().collect::<HashMap<_, _>>(),
    }
}
