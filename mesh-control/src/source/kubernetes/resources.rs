//! The table of watched kinds, as explicit [`ApiResource`]s: the fake API
//! server of the tests (and locked-down clusters) serve no discovery, and
//! a fixed table is what the RBAC role grants anyway.
use kube::discovery::ApiResource;

/// One watched kind.
#[derive(Debug, Clone)]
pub struct WatchedKind {
    pub resource: ApiResource,
    /// Cluster-scoped kinds (Namespace, Node) have no namespace.
    pub namespaced: bool,
    /// Istio and Gateway API kinds have a status subresource with
    /// conditions; rejections are also written there.
    pub has_status: bool,
}

impl WatchedKind {
    /// `pods`, `gateways.gateway.networking.k8s.io`: how logs name it.
    pub fn describe(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }
}

/// (group, version, kind, plural, namespaced, has status)
const KINDS: &[(&str, &str, &str, &str, bool, bool)] = &[
    ("", "v1", "Namespace", "namespaces", false, false),
    ("", "v1", "Pod", "pods", true, false),
    ("", "v1", "Service", "services", true, false),
    ("", "v1", "Node", "nodes", false, false),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        false,
    ),
    (
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        true,
        true,
    ),
    (
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
        true,
        true,
    ),
    (
        "gateway.networking.k8s.io",
        "v1beta1",
        "ReferenceGrant",
        "referencegrants",
        true,
        false,
    ),
    (
        "networking.istio.io",
        "v1",
        "VirtualService",
        "virtualservices",
        true,
        true,
    ),
    (
        "networking.istio.io",
        "v1",
        "DestinationRule",
        "destinationrules",
        true,
        true,
    ),
    (
        "networking.istio.io",
        "v1",
        "ServiceEntry",
        "serviceentries",
        true,
        true,
    ),
    (
        "networking.istio.io",
        "v1",
        "Gateway",
        "gateways",
        true,
        true,
    ),
    (
        "security.istio.io",
        "v1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        true,
        true,
    ),
    (
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        true,
        true,
    ),
];

/// Every kind the Kubernetes source watches (contract section 4).
pub fn watched_kinds() -> Vec<WatchedKind> {
    KINDS
        .iter()
        .map(
            |&(group, version, kind, plural, namespaced, has_status)| WatchedKind {
                resource: ApiResource {
                    group: group.into(),
                    version: version.into(),
                    api_version: if group.is_empty() {
                        version.into()
                    } else {
                        format!("{group}/{version}")
                    },
                    kind: kind.into(),
                    plural: plural.into(),
                },
                namespaced,
                has_status,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_unique_and_well_formed() {
        let kinds = watched_kinds();
        assert_eq!(kinds.len(), 14);
        let mut seen = std::collections::BTreeSet::new();
        for k in &kinds {
            assert!(seen.insert(k.describe()), "{} twice", k.describe());
            assert!(k.resource.plural.ends_with('s'));
            assert_eq!(k.resource.plural, k.resource.plural.to_lowercase());
        }
        let gw: Vec<_> = kinds
            .iter()
            .filter(|k| k.resource.kind == "Gateway")
            .collect();
        assert_eq!(gw[0].resource.api_version, "gateway.networking.k8s.io/v1");
        assert_eq!(gw[1].resource.api_version, "networking.istio.io/v1");
        assert_eq!(kinds[0].resource.api_version, "v1");
    }
}
