//! Small conversions of protobuf well-known types.
use std::time::Duration;

use mesh_xds::proto::wkt;

use super::ConfigError;

/// A protobuf `Duration` as a std one; negative or out-of-range is refused.
pub(crate) fn duration(d: &wkt::Duration, field: &str) -> Result<Duration, ConfigError> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(ConfigError::new(
            field,
            format!("invalid duration {}s {}ns", d.seconds, d.nanos),
        ));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Decodes an `Any` as `M` after checking its type URL ends in `type_name`.
pub(crate) fn decode_any<M: prost::Message + Default>(
    any: &wkt::Any,
    type_name: &str,
    field: &str,
) -> Result<M, ConfigError> {
    let got = any.type_url.rsplit('/').next().unwrap_or("");
    if got != type_name {
        return Err(ConfigError::new(
            field,
            format!("expected {type_name}, got type {:?}", any.type_url),
        ));
    }
    M::decode(any.value.as_slice())
        .map_err(|e| ConfigError::new(field, format!("undecodable {type_name}: {e}")))
}

/// The type name an `Any` carries (`envoy.extensions…HTTPFault`).
pub(crate) fn any_type(any: &wkt::Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or("")
}
