//! SPIFFE workload identities (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`) and
//! the TLS server name (SNI) that selects a destination identity's
//! certificate on a shared HBONE server.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The scheme of a SPIFFE ID.
pub const SCHEME: &str = "spiffe://";
/// Longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;
/// Longest DNS name in presentation form without the trailing dot.
const MAX_NAME: usize = 253;

/// A Kubernetes workload identity in Istio's SPIFFE form.
///
/// Fields are validated on construction, so `Display` always yields a
/// parseable SPIFFE ID and equality is plain string equality. Cloning is a
/// reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(Arc<Parts>);

#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parts {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a string or its parts are not an Istio SPIFFE identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{input:?} is not a SPIFFE ID: it must start with \"spiffe://\"")]
    MissingScheme { input: String },
    #[error("{input:?}: the trust domain is empty")]
    EmptyTrustDomain { input: String },
    #[error(
        "{input:?}: trust domain {trust_domain:?} contains {ch:?}; \
         only a-z, 0-9, '.', '-' and '_' are allowed"
    )]
    InvalidTrustDomain {
        input: String,
        trust_domain: String,
        ch: char,
    },
    #[error("{input:?}: the path must be /ns/<namespace>/sa/<service-account>, got {path:?}")]
    BadPath { input: String, path: String },
    #[error("{input:?}: {field} {value:?} is invalid: {reason}")]
    InvalidSegment {
        input: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl Identity {
    /// Builds an identity from its parts, validating each like [`FromStr`] does.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Result<Self, IdentityError> {
        let id = Identity(Arc::new(Parts {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }));
        let input = id.to_string();
        validate_trust_domain(&input, id.trust_domain())?;
        validate_segment(&input, "namespace", id.namespace())?;
        validate_segment(&input, "service account", id.service_account())?;
        Ok(id)
    }

    pub fn trust_domain(&self) -> &str {
        &self.0.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.0.service_account
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain(),
            self.namespace(),
            self.service_account()
        )
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let rest = input
            .strip_prefix(SCHEME)
            .ok_or_else(|| IdentityError::MissingScheme {
                input: input.to_string(),
            })?;
        let (trust_domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        if trust_domain.is_empty() {
            return Err(IdentityError::EmptyTrustDomain {
                input: input.to_string(),
            });
        }
        let bad_path = || IdentityError::BadPath {
            input: input.to_string(),
            path: format!("/{path}"),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let [ns_key, namespace, sa_key, service_account] = parts[..] else {
            return Err(bad_path());
        };
        if ns_key != "ns" || sa_key != "sa" {
            return Err(bad_path());
        }
        validate_trust_domain(input, trust_domain)?;
        validate_segment(input, "namespace", namespace)?;
        validate_segment(input, "service account", service_account)?;
        Ok(Identity(Arc::new(Parts {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        })))
    }
}

/// SPIFFE: a trust domain is lowercase letters, digits, dots, dashes and underscores.
fn validate_trust_domain(input: &str, td: &str) -> Result<(), IdentityError> {
    if td.is_empty() {
        return Err(IdentityError::EmptyTrustDomain {
            input: input.to_string(),
        });
    }
    match td
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(ch) => Err(IdentityError::InvalidTrustDomain {
            input: input.to_string(),
            trust_domain: td.to_string(),
            ch,
        }),
        None => Ok(()),
    }
}

/// SPIFFE: a path segment is non-empty, not `.`/`..`, of `[A-Za-z0-9._-]`.
fn validate_segment(input: &str, field: &'static str, value: &str) -> Result<(), IdentityError> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value == "." || value == ".." {
        Some("'.' and '..' are not allowed")
    } else if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        Some("only letters, digits, '.', '-' and '_' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(IdentityError::InvalidSegment {
            input: input.to_string(),
            field,
            value: value.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The TLS server name a client sends to select `id`'s certificate.
///
/// `<sa>.<ns>.sa.<trust-domain>` when that is a valid DNS name (every label
/// 1..=63 characters of `[a-z0-9-]`, not starting or ending with `-`, as
/// rustls requires; at most 253 characters in all), else
/// `h<first 32 hex digits of sha256(spiffe id)>.sa.<trust-domain>`.
pub fn sni_for(id: &Identity) -> String {
    let readable = format!(
        "{}.{}.sa.{}",
        id.service_account(),
        id.namespace(),
        id.trust_domain()
    );
    if is_dns_name(&readable) {
        return readable;
    }
    let digest = Sha256::digest(id.to_string().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("h{}.sa.{}", &hex[..32], id.trust_domain())
}

fn is_dns_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            (1..=MAX_LABEL).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        s.parse().unwrap()
    }

    #[test]
    fn display_round_trips() {
        let s = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
        let parsed = id(s);
        assert_eq!(parsed.trust_domain(), "cluster.local");
        assert_eq!(parsed.namespace(), "default");
        assert_eq!(parsed.service_account(), "bookinfo-productpage");
        assert_eq!(parsed.to_string(), s);
        assert_eq!(
            Identity::new("cluster.local", "default", "bookinfo-productpage").unwrap(),
            parsed
        );
    }

    #[test]
    fn parse_errors_name_the_problem() {
        use IdentityError::*;
        let err = |s: &str| s.parse::<Identity>().unwrap_err();
        assert!(matches!(err("http://td/ns/a/sa/b"), MissingScheme { .. }));
        assert!(matches!(
            err("spiffe:///ns/a/sa/b"),
            EmptyTrustDomain { .. }
        ));
        assert!(matches!(
            err("spiffe://Cluster.local/ns/a/sa/b"),
            InvalidTrustDomain { ch: 'C', .. }
        ));
        assert!(matches!(err("spiffe://td"), BadPath { .. }));
        assert!(matches!(err("spiffe://td/ns/a/sa"), BadPath { .. }));
        assert!(matches!(err("spiffe://td/ns/a/sa/b/c"), BadPath { .. }));
        assert!(matches!(
            err("spiffe://td/namespace/a/sa/b"),
            BadPath { .. }
        ));
        assert!(matches!(
            err("spiffe://td/ns//sa/b"),
            InvalidSegment {
                field: "namespace",
                ..
            }
        ));
        assert!(matches!(
            err("spiffe://td/ns/a/sa/.."),
            InvalidSegment {
                field: "service account",
                ..
            }
        ));
        assert!(matches!(
            err("spiffe://td/ns/a/sa/b%20c"),
            InvalidSegment { .. }
        ));
        let msg = err("spiffe://td/ns/a/sa/b c").to_string();
        assert!(
            msg.contains("service account") && msg.contains("\"b c\""),
            "{msg}"
        );
        assert!(Identity::new("td", "ns", "").is_err());
    }

    #[test]
    fn sni_is_readable_when_it_is_a_dns_name() {
        let i = id("spiffe://cluster.local/ns/default/sa/reviews-v1");
        assert_eq!(sni_for(&i), "reviews-v1.default.sa.cluster.local");
        let dotted = id("spiffe://cluster.local/ns/prod/sa/a.b");
        assert_eq!(sni_for(&dotted), "a.b.prod.sa.cluster.local");
    }

    #[test]
    fn sni_is_hashed_otherwise() {
        let expect_hashed = |s: &str| {
            let i = id(s);
            let sni = sni_for(&i);
            let digest = Sha256::digest(s.as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                sni,
                format!("h{}.sa.{}", &hex[..32], i.trust_domain()),
                "{s}"
            );
            assert_eq!(sni.split('.').next().unwrap().len(), 33);
        };
        // Uppercase, underscore, leading hyphen, a 64-character label.
        expect_hashed("spiffe://cluster.local/ns/default/sa/Reviews");
        expect_hashed("spiffe://cluster.local/ns/default/sa/my_sa");
        expect_hashed("spiffe://cluster.local/ns/default/sa/-x");
        expect_hashed(&format!(
            "spiffe://cluster.local/ns/{}/sa/a",
            "n".repeat(64)
        ));
        // Labels of 63 are fine, but the whole name exceeds 253 characters.
        let long = "x".repeat(63);
        expect_hashed(&format!("spiffe://{long}.{long}.local/ns/{long}/sa/{long}"));
        // Exactly 63 is still readable.
        let i = id(&format!("spiffe://cluster.local/ns/default/sa/{long}"));
        assert_eq!(sni_for(&i), format!("{long}.default.sa.cluster.local"));
    }

    #[test]
    fn sni_is_accepted_by_rustls() {
        for s in [
            "spiffe://cluster.local/ns/default/sa/reviews",
            "spiffe://cluster.local/ns/default/sa/UPPER_case",
        ] {
            let sni = sni_for(&id(s));
            assert!(
                rustls::pki_types::ServerName::try_from(sni.clone()).is_ok(),
                "{sni}"
            );
        }
    }
}
