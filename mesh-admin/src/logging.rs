//! The `/logging` admin endpoint, the same on every daemon: `GET` answers
//! the filter in force; `POST /logging?level=<lvl>` sets the default level
//! and `POST /logging?<target>=<lvl>` one target's (several pairs at once,
//! all or nothing). Bad input is a 400 that says which part.
use http::{Method, StatusCode};

use crate::log_control::{LogControl, LogError};

/// Answers a `/logging` request: the status and a plain-text body. `log`
/// is `None` when the process installed no runtime-changeable filter.
pub fn handle(
    log: Option<&LogControl>,
    method: &Method,
    query: Option<&str>,
) -> (StatusCode, String) {
    let Some(log) = log else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "no runtime log control in this process".into(),
        );
    };
    if method == Method::GET {
        return (StatusCode::OK, log.current());
    }
    let changes = parse_query(query.unwrap_or(""));
    if changes.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "nothing to change: POST /logging?level=<lvl> or /logging?<target>=<lvl> \
             (levels: off, error, warn, info, debug, trace)"
                .into(),
        );
    }
    match log.set(&changes) {
        Ok(filter) => {
            tracing::info!(%filter, "log filter changed");
            (StatusCode::OK, filter)
        }
        Err(e @ LogError::Reload(_)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `a=b&c=d` → pairs, percent-decoded (`mesh_agent%3A%3Apolicy`).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `%3A` → `:` and friends; `+` is a space, as in forms. A `%` not
/// followed by two hex digits is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings() {
        assert_eq!(
            parse_query("level=debug&mesh_control%3A%3Aserver=trace&x"),
            [
                ("level".to_string(), "debug".to_string()),
                ("mesh_control::server".into(), "trace".into()),
                ("x".into(), "".into())
            ]
        );
        assert_eq!(
            parse_query("a=%zz%4"),
            [("a".to_string(), "%zz%4".to_string())]
        );
        assert!(parse_query("").is_empty());
    }
}
