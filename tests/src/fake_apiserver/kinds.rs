//! The kinds the fake serves (what mesh-control watches, see
//! docs/kubernetes.md), with the version it serves them at and whether
//! they are namespaced.

/// One served kind.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// `""` for the core group.
    pub group: &'static str,
    /// The version served (objects loaded at another version are stored
    /// and served at this one, as an apiserver converts to its storage
    /// version).
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Built-in kinds' list items carry no `apiVersion`/`kind` (a real
    /// apiserver omits them there; CRD lists include them).
    pub builtin: bool,
}

impl Kind {
    /// `v1` or `networking.istio.io/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `/api/v1/pods` or `/apis/<group>/<version>/<plural>` (cluster-wide).
    pub fn path(&self, namespace: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            None => format!("{prefix}/{}", self.plural),
        }
    }
}

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    builtin: bool,
) -> Kind {
    Kind {
        group,
        version,
        kind,
        plural,
        namespaced,
        builtin,
    }
}

pub static KINDS: &[Kind] = &[
    kind("", "v1", "Namespace", "namespaces", false, true),
    kind("", "v1", "Pod", "pods", true, true),
    kind("", "v1", "Service", "services", true, true),
    kind("", "v1", "Node", "nodes", false, true),
    kind("", "v1", "Event", "events", true, true),
    kind(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        true,
    ),
    kind("events.k8s.io", "v1", "Event", "events", true, true),
    kind(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
        "gateways",
        true,
        false,
    ),
    kind(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
        true,
        false,
    ),
    kind(
        "gateway.networking.k8s.io",
        "v1beta1",
        "ReferenceGrant",
        "referencegrants",
        true,
        false,
    ),
    kind(
        "networking.istio.io",
        "v1",
        "VirtualService",
        "virtualservices",
        true,
        false,
    ),
    kind(
        "networking.istio.io",
        "v1",
        "DestinationRule",
        "destinationrules",
        true,
        false,
    ),
    kind(
        "networking.istio.io",
        "v1",
        "ServiceEntry",
        "serviceentries",
        true,
        false,
    ),
    kind(
        "networking.istio.io",
        "v1",
        "Gateway",
        "gateways",
        true,
        false,
    ),
    kind(
        "security.istio.io",
        "v1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        true,
        false,
    ),
    kind(
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        true,
        false,
    ),
];

/// The kind of an object's `apiVersion` + `kind` (any version of the group).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Kind> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    KINDS.iter().find(|k| k.group == group && k.kind == kind)
}

/// The kind served at `group`/`version` under `plural`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// `Pod`, or `Gateway.gateway.networking.k8s.io` where a name is ambiguous.
pub fn by_name(name: &str) -> Option<&'static Kind> {
    match name.split_once('.') {
        Some((kind, group)) => KINDS.iter().find(|k| k.kind == kind && k.group == group),
        None => {
            let mut found = KINDS.iter().filter(|k| k.kind == name);
            let first = found.next()?;
            found.next().is_none().then_some(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(
            by_kind("networking.istio.io/v1alpha3", "VirtualService")
                .unwrap()
                .plural,
            "virtualservices"
        );
        assert_eq!(
            by_kind("v1", "Pod").unwrap().path(Some("x")),
            "/api/v1/namespaces/x/pods"
        );
        assert!(by_kind("apps/v1", "Deployment").is_none());
        assert!(by_name("Gateway").is_none(), "ambiguous");
        assert_eq!(
            by_name("Gateway.networking.istio.io").unwrap().group,
            "networking.istio.io"
        );
        assert_eq!(
            by_plural("security.istio.io", "v1", "peerauthentications")
                .unwrap()
                .kind,
            "PeerAuthentication"
        );
    }
}
