//! `envoy.filters.http.fault` (`HTTPFault`): a fixed delay and/or an abort,
//! each on a percentage of requests, optionally only for requests whose
//! headers match.
use std::time::Duration;

use envoy_types::pb::envoy::extensions::{
    filters::common::fault::v3::fault_delay::FaultDelaySecifier,
    filters::http::fault::v3::{fault_abort::ErrorType, HttpFault},
};

use super::{
    at, matcher::HeaderMatcher, percent::Fraction, unsupported::warn_once, wkt, ConfigError,
};

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
pub const FAULT_TYPE: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    Http(u16),
    Grpc(u32),
}

#[derive(Debug, Clone, Default)]
pub struct FaultConfig {
    pub delay: Option<(Duration, Fraction)>,
    pub abort: Option<(Abort, Fraction)>,
    /// Faults apply only when all match.
    pub headers: Vec<HeaderMatcher>,
}

// A missing percentage is the proto default: 0 %.
fn fraction(
    p: &Option<envoy_types::pb::envoy::r#type::v3::FractionalPercent>,
    field: &str,
) -> Result<Fraction, ConfigError> {
    match p {
        Some(p) => Fraction::from_proto(p, field),
        None => Ok(Fraction {
            numerator: 0,
            denominator: 100,
        }),
    }
}

impl FaultConfig {
    pub fn compile(f: &HttpFault, field: &str) -> Result<Self, ConfigError> {
        let mut out = FaultConfig::default();
        if let Some(d) = &f.delay {
            let dfield = at(field, "delay");
            match &d.fault_delay_secifier {
                Some(FaultDelaySecifier::FixedDelay(dur)) => {
                    let dur = wkt::duration(dur, &at(&dfield, "fixed_delay"))?;
                    let pct = fraction(&d.percentage, &at(&dfield, "percentage"))?;
                    out.delay = Some((dur, pct));
                }
                Some(FaultDelaySecifier::HeaderDelay(_)) => {
                    warn_once("HTTPFault.delay.header_delay", &dfield)
                }
                None => {
                    return Err(ConfigError::new(
                        dfield,
                        "delay needs fixed_delay or header_delay",
                    ))
                }
            }
        }
        if let Some(a) = &f.abort {
            let afield = at(field, "abort");
            let pct = fraction(&a.percentage, &at(&afield, "percentage"))?;
            match &a.error_type {
                Some(ErrorType::HttpStatus(s)) => {
                    if !(200..600).contains(s) {
                        return Err(ConfigError::new(
                            at(&afield, "http_status"),
                            format!("{s} is not an HTTP status in [200, 600)"),
                        ));
                    }
                    out.abort = Some((Abort::Http(*s as u16), pct));
                }
                Some(ErrorType::GrpcStatus(s)) => out.abort = Some((Abort::Grpc(*s), pct)),
                Some(ErrorType::HeaderAbort(_)) => {
                    warn_once("HTTPFault.abort.header_abort", &afield)
                }
                None => return Err(ConfigError::new(afield, "abort needs an error type")),
            }
        }
        for (i, h) in f.headers.iter().enumerate() {
            out.headers
                .push(HeaderMatcher::compile(h, &format!("{field}.headers[{i}]"))?);
        }
        if f.response_rate_limit.is_some() {
            warn_once("HTTPFault.response_rate_limit", field);
        }
        if !f.upstream_cluster.is_empty() || !f.downstream_nodes.is_empty() {
            warn_once("HTTPFault.upstream_cluster/downstream_nodes", field);
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.delay.is_none() && self.abort.is_none()
    }
}
