//! Which waypoint or ingress gateway pod an ADS stream serves, from its
//! `Node` (docs/contracts/waypoint-xds.md and docs/contracts/gateway-xds.md,
//! "Streams and scoping"), and which types are scoped per proxy
//! (Listener, RouteConfiguration) rather than global.
use mesh_xds::{proto::envoy_core::Node, LISTENER_TYPE_URL, ROUTE_TYPE_URL};

use super::resources::{Resources, TypeResources};

/// Types served per waypoint rather than globally.
pub(super) fn scoped_type(type_url: &str) -> bool {
    type_url == LISTENER_TYPE_URL || type_url == ROUTE_TYPE_URL
}

/// Which waypoint a stream is, from its `Node`: metadata `NAMESPACE` + `WAYPOINT`, else a node id
/// `waypoint~<ip>~<pod>.<ns>~...` whose pod is a waypoint's.
#[derive(Debug, Default)]
pub(super) struct StreamIdentity {
    /// `waypoint/<ns>/<name>` from the metadata.
    pub declared: Option<String>,
    /// `<pod>.<ns>` from a `waypoint~` node id.
    pub pod: Option<String>,
    /// `<pod>.<ns>` from a `router~` node id (an ingress gateway).
    pub router: Option<String>,
    /// The "no known waypoint" warning was logged.
    pub warned: bool,
    /// `(namespace, service account)` the stream's token proved, when
    /// callers are authenticated: a waypoint's listener and routes go only
    /// to its own account (Istio's convention: the Gateway's name).
    pub account: Option<(String, String)>,
    /// The "not this waypoint's account" warning was logged.
    pub denied_warned: bool,
    /// Istio's ztunnel (node type `ztunnel` without our agent's
    /// `MESH_AGENT_VERSION` metadata): sent only what it can decode.
    pub ztunnel: bool,
    /// The "policies withheld from a ztunnel" note was logged.
    pub withheld_logged: bool,
}

impl StreamIdentity {
    pub fn of(node: Option<&Node>) -> Self {
        let Some(node) = node else {
            return Self::default();
        };
        let meta = |key: &str| {
            use mesh_xds::proto::wkt::value::Kind;
            node.metadata
                .as_ref()?
                .fields
                .get(key)
                .and_then(|v| match &v.kind {
                    Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                })
        };
        let declared = match (meta("NAMESPACE"), meta("WAYPOINT")) {
            (Some(ns), Some(name)) => Some(format!("waypoint/{ns}/{name}")),
            _ => None,
        };
        let mut parts = node.id.split('~');
        let (pod, router) = match (parts.next(), parts.next(), parts.next()) {
            (Some("waypoint"), Some(_ip), Some(pod)) if pod.contains('.') => {
                (Some(pod.to_string()), None)
            }
            (Some("router"), Some(_ip), Some(pod)) if pod.contains('.') => {
                (None, Some(pod.to_string()))
            }
            _ => (None, None),
        };
        StreamIdentity {
            declared,
            pod,
            router,
            ztunnel: super::ztunnel_compat::is_ztunnel(node),
            ..Self::default()
        }
    }

    /// What the stream may see of the scoped type `type_url`: its
    /// waypoint's resource ([`Self::permitted_waypoint`]), or, for a
    /// `router~` node, its gateway pod's listeners and routes (with
    /// authentication only when the token's account is the pod's).
    /// `None`: it is neither.
    pub fn permitted(
        &mut self,
        current: &Resources,
        type_url: &str,
        all: &TypeResources,
    ) -> Option<TypeResources> {
        if let Some(pod) = &self.router {
            let gateway = current.gateway_pods.get(pod)?;
            if let Some(account) = &self.account {
                if *account != gateway.account {
                    if !std::mem::replace(&mut self.denied_warned, true) {
                        tracing::warn!(
                            %pod,
                            account = %format!("{}/{}", account.0, account.1),
                            "stream asks for an ingress gateway pod's listeners and routes with another service account's token: it gets none"
                        );
                    }
                    return None;
                }
            }
            return gateway.of_type(type_url).cloned();
        }
        let own = self.permitted_waypoint(current)?;
        Some(
            all.iter()
                .filter(|(name, _)| **name == own)
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect(),
        )
    }

    /// [`Self::waypoint`], unless the stream's proven account is not that
    /// waypoint's: then none, and a warning once.
    pub fn permitted_waypoint(&mut self, current: &Resources) -> Option<String> {
        let waypoint = self.waypoint(current)?;
        let Some((ns, sa)) = &self.account else {
            return Some(waypoint);
        };
        if waypoint == format!("waypoint/{ns}/{sa}") {
            return Some(waypoint);
        }
        if !std::mem::replace(&mut self.denied_warned, true) {
            tracing::warn!(
                %waypoint,
                account = %format!("{ns}/{sa}"),
                "stream asks for a waypoint's listener and routes with another service account's token: it gets none"
            );
        }
        None
    }

    /// The stream's listener/route name under `current`.
    pub fn waypoint(&self, current: &Resources) -> Option<String> {
        self.declared.clone().or_else(|| {
            self.pod
                .as_ref()
                .and_then(|pod| current.waypoint_pods.get(pod))
                .map(|r| r.resource_name())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use mesh_xds::proto::wkt::{value::Kind, Struct, Value};

    use super::*;
    use crate::model::WaypointRef;

    fn node(id: &str, meta: &[(&str, &str)]) -> Node {
        Node {
            id: id.into(),
            metadata: Some(Struct {
                fields: meta
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(Kind::StringValue(v.to_string())),
                            },
                        )
                    })
                    .collect::<HashMap<_, _>>(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn metadata_then_node_id_then_nothing() {
        let mut current = Resources::default();
        current.waypoint_pods.insert(
            "wp-7d9.shop".into(),
            WaypointRef {
                namespace: "shop".into(),
                name: "wp".into(),
            },
        );
        let declared = StreamIdentity::of(Some(&node(
            "waypoint~10.0.0.9~other.ns~ns.svc.cluster.local",
            &[("NAMESPACE", "blog"), ("WAYPOINT", "edge")],
        )));
        assert_eq!(
            declared.waypoint(&current).as_deref(),
            Some("waypoint/blog/edge")
        );
        let by_pod = StreamIdentity::of(Some(&node(
            "waypoint~10.0.0.9~wp-7d9.shop~shop.svc.cluster.local",
            &[("NAMESPACE", "shop")],
        )));
        assert_eq!(
            by_pod.waypoint(&current).as_deref(),
            Some("waypoint/shop/wp")
        );
        for unknown in [
            StreamIdentity::of(Some(&node("waypoint~10.0.0.9~nobody.shop~x", &[]))),
            StreamIdentity::of(Some(&node("node-1", &[]))),
            StreamIdentity::of(None),
        ] {
            assert_eq!(unknown.waypoint(&current), None);
        }
        assert!(scoped_type(LISTENER_TYPE_URL) && scoped_type(ROUTE_TYPE_URL));
        assert!(!scoped_type(mesh_xds::CLUSTER_TYPE_URL));
    }

    #[test]
    fn a_router_stream_gets_only_its_own_gateway_pods_resources() {
        use std::sync::Arc;

        use crate::serve::resources::{GatewayPodResources, VersionedResource};

        let resource = |v: &str| {
            Arc::new(VersionedResource {
                version: v.into(),
                any: Default::default(),
            })
        };
        let mut current = Resources::default();
        for (pod, version) in [("ingress-0.istio-system", "a"), ("edge-0.default", "b")] {
            current.gateway_pods.insert(
                pod.into(),
                GatewayPodResources {
                    account: (pod.split('.').nth(1).unwrap().into(), "ingress".into()),
                    listeners: [("0.0.0.0_80".to_string(), resource(version))].into(),
                    routes: [("http.80".to_string(), resource(version))].into(),
                },
            );
        }
        // The global map holds a waypoint's listener: never a router's.
        let all: TypeResources = [("waypoint/a/b".to_string(), resource("w"))].into();
        let router = |account: Option<(&str, &str)>| StreamIdentity {
            account: account.map(|(ns, sa)| (ns.to_string(), sa.to_string())),
            ..StreamIdentity::of(Some(&node(
                "router~10.244.8.1~ingress-0.istio-system~istio-system.svc.cluster.local",
                &[("NAMESPACE", "istio-system"), ("NAME", "ingress-0")],
            )))
        };
        let versions = |got: Option<TypeResources>| -> Option<Vec<(String, String)>> {
            got.map(|m| m.into_iter().map(|(n, r)| (n, r.version.clone())).collect())
        };
        let expect = |name: &str| Some(vec![(name.to_string(), "a".to_string())]);
        for account in [None, Some(("istio-system", "ingress"))] {
            let mut stream = router(account);
            assert_eq!(
                versions(stream.permitted(&current, LISTENER_TYPE_URL, &all)),
                expect("0.0.0.0_80")
            );
            assert_eq!(
                versions(stream.permitted(&current, ROUTE_TYPE_URL, &all)),
                expect("http.80")
            );
        }
        // Another account's token: nothing, and a warning once.
        let mut stream = router(Some(("default", "ingress")));
        assert_eq!(stream.permitted(&current, LISTENER_TYPE_URL, &all), None);
        assert!(stream.denied_warned);
        // A router whose pod is no gateway's, and a waypoint-less stream.
        let mut unknown = StreamIdentity::of(Some(&node("router~10.0.0.1~nobody.shop~x", &[])));
        assert_eq!(unknown.permitted(&current, LISTENER_TYPE_URL, &all), None);
        let mut plain = StreamIdentity::of(Some(&node("sidecar~10.0.0.1~p.shop~x", &[])));
        assert_eq!(plain.permitted(&current, LISTENER_TYPE_URL, &all), None);
        // A waypoint stream still gets its own listener through `permitted`.
        let mut waypoint = StreamIdentity::of(Some(&node(
            "waypoint~10.0.0.9~wp-0.a~a.svc.cluster.local",
            &[("NAMESPACE", "a"), ("WAYPOINT", "b")],
        )));
        assert_eq!(
            versions(waypoint.permitted(&current, LISTENER_TYPE_URL, &all)),
            Some(vec![("waypoint/a/b".to_string(), "w".to_string())])
        );
    }

    #[test]
    fn a_proven_account_gets_only_its_own_waypoint() {
        let current = Resources::default();
        let declared = |account: Option<(&str, &str)>| StreamIdentity {
            account: account.map(|(ns, sa)| (ns.to_string(), sa.to_string())),
            ..StreamIdentity::of(Some(&node(
                "waypoint~10.0.0.9~edge-1.blog~blog.svc.cluster.local",
                &[("NAMESPACE", "blog"), ("WAYPOINT", "edge")],
            )))
        };
        // Not authenticated: as declared.
        assert_eq!(
            declared(None).permitted_waypoint(&current).as_deref(),
            Some("waypoint/blog/edge")
        );
        // The waypoint's own account (the Gateway's name).
        assert_eq!(
            declared(Some(("blog", "edge")))
                .permitted_waypoint(&current)
                .as_deref(),
            Some("waypoint/blog/edge")
        );
        // Any other account, even in the same namespace: nothing.
        for other in [("blog", "default"), ("shop", "edge")] {
            let mut stream = declared(Some(other));
            assert_eq!(stream.permitted_waypoint(&current), None, "{other:?}");
            assert!(stream.denied_warned);
        }
    }
}
