//! SPIFFE IDs of Kubernetes workloads: `spiffe://<td>/ns/<ns>/sa/<sa>`.
use crate::model::Identity;

/// Parses a workload SPIFFE ID. Only the Kubernetes form is accepted: a
/// trust domain (lowercase letters, digits, `.`, `-`, `_`) and exactly the
/// path `/ns/<namespace>/sa/<service account>`, whose segments use letters,
/// digits, `.`, `-`, `_` (no percent-encoding, query or fragment).
pub fn parse_spiffe_id(uri: &str) -> Result<Identity, String> {
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| format!("{uri:?} is not a SPIFFE ID (spiffe://<trust domain>/ns/<namespace>/sa/<service account>)"))?;
    let (trust_domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    let td_ok = !trust_domain.is_empty()
        && trust_domain
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    if !td_ok {
        return Err(format!(
            "{uri:?}: {trust_domain:?} is not a valid SPIFFE trust domain"
        ));
    }
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["ns", namespace, "sa", service_account]
            if segment_ok(namespace) && segment_ok(service_account) =>
        {
            Ok(Identity {
                trust_domain: trust_domain.to_string(),
                namespace: namespace.to_string(),
                service_account: service_account.to_string(),
            })
        }
        _ => Err(format!(
            "{uri:?}: the path must be /ns/<namespace>/sa/<service account>"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_ids_and_round_trips() {
        let id =
            parse_spiffe_id("spiffe://cluster.local/ns/default/sa/bookinfo-productpage").unwrap();
        assert_eq!(id.namespace, "default");
        assert_eq!(id.service_account, "bookinfo-productpage");
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        );
    }

    #[test]
    fn rejects_other_forms() {
        for bad in [
            "https://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local",
            "spiffe:///ns/a/sa/b",
            "spiffe://Cluster.Local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b/c",
            "spiffe://cluster.local/ns/a/sa/",
            "spiffe://cluster.local/ns/../sa/b",
            "spiffe://cluster.local/ns/a%2f/sa/b",
            "spiffe://cluster.local/ns/a/sa/b?x=1",
            "spiffe://cluster.local/workload/a",
        ] {
            assert!(parse_spiffe_id(bad).is_err(), "{bad}");
        }
    }
}
