//! Per-request behaviour switches: `?delay_ms=N` / `x-delay-ms: N` and
//! `?status=N` / `x-status: N`. Query and header forms exist because some
//! clients (a browser, curl through a gateway) can set only one of them;
//! the query wins when both are given.
use std::time::Duration;

use hyper::{http::request::Parts, StatusCode};

/// What a request asked for; `None` falls back to the instance default.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Switches {
    pub delay: Option<Duration>,
    pub status: Option<StatusCode>,
}

impl Switches {
    /// Reads the switches; an unparsable value is an error (a test that
    /// misspells a number should fail loudly, not get a normal reply).
    pub fn from_parts(parts: &Parts) -> Result<Self, String> {
        let delay = lookup(parts, "delay_ms", "x-delay-ms")
            .map(|v| {
                v.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|e| format!("delay_ms {v:?}: {e}"))
            })
            .transpose()?;
        let status = lookup(parts, "status", "x-status")
            .map(|v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|code| (100..=599).contains(code))
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .ok_or_else(|| format!("status {v:?}: not an HTTP status code"))
            })
            .transpose()?;
        Ok(Self { delay, status })
    }
}

fn lookup(parts: &Parts, query_key: &str, header: &str) -> Option<String> {
    let from_query = parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == query_key)
            .map(|(_, v)| v.to_string())
    });
    from_query.or_else(|| {
        parts
            .headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = hyper::Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn query_wins_over_header() {
        let s = Switches::from_parts(&parts("/p?status=503", &[("x-status", "404")])).unwrap();
        assert_eq!(s.status, Some(StatusCode::SERVICE_UNAVAILABLE));
        let s = Switches::from_parts(&parts("/p", &[("x-delay-ms", "20")])).unwrap();
        assert_eq!(s.delay, Some(Duration::from_millis(20)));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(Switches::from_parts(&parts("/p?status=42", &[])).is_err());
        assert!(Switches::from_parts(&parts("/p?delay_ms=x", &[])).is_err());
        assert_eq!(
            Switches::from_parts(&parts("/p?other=1", &[])).unwrap(),
            Switches::default()
        );
    }
}
