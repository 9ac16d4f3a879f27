//! VirtualService `fault` → the route's
//! `typed_per_filter_config["envoy.filters.http.fault"]` (`HTTPFault`):
//! a fixed delay and/or an abort (HTTP or gRPC status), each with its
//! percentage as `FractionalPercent` per MILLION (absent: 100%).
use envoy_types::pb::{
    envoy::extensions::filters::{
        common::fault::v3::{fault_delay::FaultDelaySecifier, FaultDelay},
        http::fault::v3::{fault_abort::ErrorType, FaultAbort, HttpFault},
    },
    google::protobuf::Any,
};

use super::pb;
use crate::model::routing::{AbortStatus, Fault, Percent};

pub const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// gRPC status names (Istio writes `grpcStatus: "UNAVAILABLE"`).
const GRPC_CODES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A gRPC status given by name or number.
pub fn grpc_code(status: &str) -> Option<u32> {
    status.parse().ok().or_else(|| {
        GRPC_CODES
            .iter()
            .position(|c| c.eq_ignore_ascii_case(status))
            .map(|i| i as u32)
    })
}

/// The `HTTPFault` of `fault`. Errors name the field when Envoy has no
/// equivalent (`http2Error`, an unknown gRPC status).
pub fn http_fault(fault: &Fault) -> Result<HttpFault, String> {
    let percentage = |p: Option<Percent>, legacy: Option<u32>| {
        p.or_else(|| legacy.and_then(|n| Percent::new(f64::from(n))))
            .map_or_else(pb::all, pb::fraction)
    };
    let delay = fault.delay.as_ref().map(|d| FaultDelay {
        fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(pb::duration(d.fixed_delay))),
        percentage: Some(percentage(d.percentage, d.percent)),
    });
    let abort = match &fault.abort {
        None => None,
        Some(a) => {
            let error_type = match &a.status {
                AbortStatus::Http(code) => ErrorType::HttpStatus(u32::from(*code)),
                AbortStatus::Grpc(name) => {
                    ErrorType::GrpcStatus(grpc_code(name).ok_or_else(|| {
                        format!("fault.abort.grpcStatus: {name:?} is not a gRPC status")
                    })?)
                }
                AbortStatus::Http2Error(_) => {
                    return Err(
                        "fault.abort.http2Error: not supported by Envoy's fault filter".into(),
                    )
                }
            };
            Some(FaultAbort {
                error_type: Some(error_type),
                percentage: Some(percentage(a.percentage, None)),
            })
        }
    };
    Ok(HttpFault {
        delay,
        abort,
        ..Default::default()
    })
}

/// [`http_fault`] packed for `typed_per_filter_config`.
pub fn fault_config(fault: &Fault) -> Result<Any, String> {
    http_fault(fault).map(|f| pb::any(FAULT_TYPE, &f))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;

    use super::*;
    use crate::model::routing::{FaultAbort as IstioAbort, FaultDelay as IstioDelay};

    #[test]
    fn delay_percentage_is_per_million_and_abort_defaults_to_all() {
        let f = http_fault(&Fault {
            delay: Some(IstioDelay {
                fixed_delay: Duration::from_secs(5),
                percentage: Percent::new(0.1),
                percent: None,
            }),
            abort: Some(IstioAbort {
                status: AbortStatus::Grpc("UNAVAILABLE".into()),
                percentage: None,
            }),
        })
        .unwrap();
        let delay = f.delay.unwrap();
        let p = delay.percentage.unwrap();
        assert_eq!(
            (p.numerator, p.denominator),
            (1000, DenominatorType::Million as i32)
        );
        assert_eq!(
            delay.fault_delay_secifier,
            Some(FaultDelaySecifier::FixedDelay(pb::duration(
                Duration::from_secs(5)
            )))
        );
        let abort = f.abort.unwrap();
        assert_eq!(abort.error_type, Some(ErrorType::GrpcStatus(14)));
        assert_eq!(abort.percentage.unwrap().numerator, 1_000_000);
    }

    #[test]
    fn http2_error_is_refused_naming_the_field() {
        let err = http_fault(&Fault {
            delay: None,
            abort: Some(IstioAbort {
                status: AbortStatus::Http2Error("REFUSED_STREAM".into()),
                percentage: None,
            }),
        })
        .unwrap_err();
        assert!(err.starts_with("fault.abort.http2Error"), "{err}");
    }
}
