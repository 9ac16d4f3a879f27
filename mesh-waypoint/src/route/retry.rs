//! Envoy's retry decisions: which outcomes a `retry_on` list retries, and
//! the jittered exponential backoff between attempts.
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::dice::Dice;
use crate::{
    config::table::{retry_on as on, RetryPolicy},
    upstream::UpstreamError,
};

/// How one attempt ended.
pub enum Outcome<R> {
    Response(R, StatusCode),
    Error(UpstreamError),
    /// `per_try_timeout` fired.
    PerTryTimeout,
}

fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Whether a response with `status` / `headers` is retried under `p`.
pub fn retriable_response(p: &RetryPolicy, status: StatusCode, headers: &HeaderMap) -> bool {
    let s = status.as_u16();
    let has = |bit| p.retry_on & bit != 0;
    if has(on::X5XX) && s >= 500 {
        return true;
    }
    if has(on::GATEWAY_ERROR) && (502..=504).contains(&s) {
        return true;
    }
    if has(on::RETRIABLE_4XX) && s == 409 {
        return true;
    }
    if has(on::RETRIABLE_STATUS_CODES) && p.retriable_status_codes.contains(&s) {
        return true;
    }
    match grpc_status(headers) {
        Some(1) => has(on::GRPC_CANCELLED),
        Some(4) => has(on::GRPC_DEADLINE_EXCEEDED),
        Some(8) => has(on::GRPC_RESOURCE_EXHAUSTED),
        Some(13) => has(on::GRPC_INTERNAL),
        Some(14) => has(on::GRPC_UNAVAILABLE),
        _ => false,
    }
}

/// Whether an attempt that failed without a response is retried under `p`.
pub fn retriable_error(p: &RetryPolicy, e: &UpstreamError) -> bool {
    let has = |bit| p.retry_on & bit != 0;
    if e.is_connect_failure() {
        return has(on::CONNECT_FAILURE) || has(on::X5XX) || has(on::GATEWAY_ERROR);
    }
    if e.is_refused_stream() && has(on::REFUSED_STREAM) {
        return true;
    }
    if e.is_reset() {
        return has(on::RESET) || has(on::X5XX) || has(on::GATEWAY_ERROR);
    }
    false
}

/// A per-try timeout counts as "no response": retried under `5xx`,
/// `gateway-error` and `reset` (Envoy's "read timeout").
pub fn retriable_timeout(p: &RetryPolicy) -> bool {
    p.retry_on & (on::X5XX | on::GATEWAY_ERROR | on::RESET) != 0
}

/// Envoy's jittered exponential backoff: before retry `n` (0-based) wait a
/// uniform draw below `min(base * 2^n, max)`.
pub fn backoff(p: &RetryPolicy, n: u32, dice: &Dice) -> Duration {
    let base = p.backoff_base.as_millis() as u64;
    let max = p.backoff_max.as_millis().max(1) as u64;
    let interval = base.saturating_mul(1u64 << n.min(20)).min(max).max(1);
    Duration::from_millis(dice.below(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retry_on: u32, codes: &[u16]) -> RetryPolicy {
        RetryPolicy {
            retry_on,
            retry_on_text: String::new(),
            num_retries: 2,
            per_try_timeout: None,
            retriable_status_codes: codes.to_vec(),
            previous_hosts: true,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
        }
    }

    #[test]
    fn refused_streams_are_retried_under_refused_stream_and_reset_only() {
        let refused = UpstreamError::RefusedStream("x".into());
        let reset = UpstreamError::Reset("x".into());
        // Istio's default policy names refused-stream but not reset.
        let p = policy(on::CONNECT_FAILURE | on::REFUSED_STREAM, &[]);
        assert!(retriable_error(&p, &refused));
        assert!(!retriable_error(&p, &reset));
        assert!(retriable_error(&policy(on::RESET, &[]), &refused));
        assert!(!retriable_error(
            &policy(on::CONNECT_FAILURE, &[]),
            &refused
        ));
        assert_eq!(refused.flag(), "UR");
    }

    #[test]
    fn classes() {
        let h = HeaderMap::new();
        let p = policy(on::GATEWAY_ERROR, &[]);
        assert!(retriable_response(&p, StatusCode::BAD_GATEWAY, &h));
        assert!(!retriable_response(
            &p,
            StatusCode::INTERNAL_SERVER_ERROR,
            &h
        ));
        let p = policy(on::X5XX, &[]);
        assert!(retriable_response(
            &p,
            StatusCode::INTERNAL_SERVER_ERROR,
            &h
        ));
        assert!(retriable_error(
            &p,
            &UpstreamError::ConnectFailure("x".into())
        ));
        assert!(!retriable_error(
            &p,
            &UpstreamError::Overflow("max_requests")
        ));
        let p = policy(on::RETRIABLE_STATUS_CODES, &[503]);
        assert!(retriable_response(&p, StatusCode::SERVICE_UNAVAILABLE, &h));
        assert!(!retriable_response(&p, StatusCode::BAD_GATEWAY, &h));
        let p = policy(on::RETRIABLE_4XX, &[]);
        assert!(retriable_response(&p, StatusCode::CONFLICT, &h));
        assert!(!retriable_response(&p, StatusCode::NOT_FOUND, &h));
        let mut g = HeaderMap::new();
        g.insert("grpc-status", "14".parse().unwrap());
        let p = policy(on::GRPC_UNAVAILABLE, &[]);
        assert!(retriable_response(&p, StatusCode::OK, &g));
        let p = policy(on::GRPC_CANCELLED, &[]);
        assert!(!retriable_response(&p, StatusCode::OK, &g));
        assert!(!retriable_error(
            &policy(on::CONNECT_FAILURE, &[]),
            &UpstreamError::Reset("r".into())
        ));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let p = policy(on::X5XX, &[]);
        let dice = Dice::seeded(1);
        for (n, cap) in [(0, 25), (1, 50), (2, 100), (3, 200), (4, 250), (9, 250)] {
            let max = (0..2000)
                .map(|_| backoff(&p, n, &dice).as_millis())
                .max()
                .unwrap();
            assert!(
                max < cap && max >= cap * 8 / 10,
                "retry {n}: max {max} cap {cap}"
            );
        }
    }
}
