//! The route's `hash_policy` → the 64-bit key consistent-hash load
//! balancers use (`SendContext.hash`). Policies combine as in Envoy: each
//! new hash is mixed into the previous (rotate left 1, xor); a `terminal`
//! policy that produced a hash stops the evaluation.
use std::net::IpAddr;

use http::{header, Request};

use crate::config::table::{HashPolicy, HashRule};

/// FNV-1a: stable across processes and releases (unlike `DefaultHasher`),
/// so a key maps to the same host after a waypoint restart.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn cookie<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn query_param<'a, B>(req: &'a Request<B>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

/// The hash of `req` under `rules`; None when no policy produced one.
pub fn compute<B>(rules: &[HashRule], req: &Request<B>, source: Option<IpAddr>) -> Option<u64> {
    let mut acc: Option<u64> = None;
    for rule in rules {
        let h = match &rule.policy {
            HashPolicy::Header(name) => {
                let values: Vec<&[u8]> = req
                    .headers()
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| v.as_bytes())
                    .collect();
                (!values.is_empty()).then(|| fnv1a(&values.join(&b","[..])))
            }
            HashPolicy::Cookie(name) => cookie(req, name).map(|v| fnv1a(v.as_bytes())),
            HashPolicy::SourceIp => source.map(|ip| fnv1a(ip.to_string().as_bytes())),
            HashPolicy::QueryParameter(name) => query_param(req, name).map(|v| fnv1a(v.as_bytes())),
        };
        if let Some(h) = h {
            acc = Some(match acc {
                Some(prev) => prev.rotate_left(1) ^ h,
                None => h,
            });
            if rule.terminal {
                break;
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: HashPolicy) -> HashRule {
        HashRule {
            policy: p,
            terminal: false,
        }
    }

    #[test]
    fn header_cookie_query_and_source() {
        let req = Request::builder()
            .uri("/p?user=7")
            .header("x-user", "alice")
            .header("cookie", "a=1; session=xyz")
            .body(())
            .unwrap();
        assert_eq!(
            compute(&[rule(HashPolicy::Header("x-user".into()))], &req, None),
            Some(fnv1a(b"alice"))
        );
        assert_eq!(
            compute(&[rule(HashPolicy::Cookie("session".into()))], &req, None),
            Some(fnv1a(b"xyz"))
        );
        assert_eq!(
            compute(
                &[rule(HashPolicy::QueryParameter("user".into()))],
                &req,
                None
            ),
            Some(fnv1a(b"7"))
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            compute(&[rule(HashPolicy::SourceIp)], &req, Some(ip)),
            Some(fnv1a(b"10.0.0.1"))
        );
        assert_eq!(
            compute(&[rule(HashPolicy::Header("missing".into()))], &req, None),
            None
        );
        let combined = compute(
            &[
                rule(HashPolicy::Header("x-user".into())),
                rule(HashPolicy::Cookie("session".into())),
            ],
            &req,
            None,
        );
        assert_eq!(
            combined,
            Some(fnv1a(b"alice").rotate_left(1) ^ fnv1a(b"xyz"))
        );
        let terminal = compute(
            &[
                HashRule {
                    policy: HashPolicy::Header("x-user".into()),
                    terminal: true,
                },
                rule(HashPolicy::Cookie("session".into())),
            ],
            &req,
            None,
        );
        assert_eq!(terminal, Some(fnv1a(b"alice")));
    }
}
