//! What an Istio ztunnel would refuse, kept from its streams.
//!
//! A stream is a ztunnel's when its node id has node type `ztunnel` and
//! its node metadata lacks `MESH_AGENT_VERSION` (our agent presents itself
//! as a ztunnel to istiod and adds that key). Unknown *fields* are safe:
//! proto3 decoders skip them, so our extensions numbered 1000 and up reach
//! ztunnel harmlessly. Unknown *enum values* are not: ztunnel converts
//! `Authorization.action` strictly and NACKs a response holding a value it
//! does not know. Our `AUDIT` (2) is such a value, so AUDIT policies are
//! not sent to ztunnel streams; they are log-only, so enforcement is the
//! same (docs/contracts/workload-xds.md, "Node identity").
use std::{borrow::Cow, collections::BTreeSet};

use mesh_xds::{
    client::node_identity::{parse_node_id, MESH_AGENT_VERSION, NODE_PROXY_TYPE},
    proto::{envoy_core::Node, istio_security::Authorization},
    AUTHORIZATION_TYPE_URL,
};

use super::resources::{Resources, TypeResources};

/// `Authorization.action` values Istio's enum has: ALLOW 0, DENY 1.
const ISTIO_ACTIONS: [i32; 2] = [0, 1];

/// Whether `node` is Istio's ztunnel (not our agent).
pub(super) fn is_ztunnel(node: &Node) -> bool {
    let ztunnel_type = parse_node_id(&node.id).is_some_and(|p| p.node_type == NODE_PROXY_TYPE);
    let ours = node
        .metadata
        .as_ref()
        .is_some_and(|m| m.fields.contains_key(MESH_AGENT_VERSION));
    ztunnel_type && !ours
}

/// Names of the policies ztunnel cannot decode (an action outside Istio's
/// enum: our AUDIT).
pub(super) fn withheld<'a>(
    policies: impl IntoIterator<Item = (&'a String, &'a Authorization)>,
) -> BTreeSet<String> {
    policies
        .into_iter()
        .filter(|(_, p)| !ISTIO_ACTIONS.contains(&p.action))
        .map(|(name, _)| name.clone())
        .collect()
}

/// `available` of `type_url` without what a ztunnel would refuse, and how
/// many were left out.
pub(super) fn for_ztunnel<'a>(
    type_url: &str,
    available: Cow<'a, TypeResources>,
    current: &Resources,
) -> (Cow<'a, TypeResources>, usize) {
    if type_url != AUTHORIZATION_TYPE_URL || current.ztunnel_withheld.is_empty() {
        return (available, 0);
    }
    let before = available.len();
    let kept: TypeResources = available
        .iter()
        .filter(|(name, _)| !current.ztunnel_withheld.contains(*name))
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect();
    let left_out = before - kept.len();
    (Cow::Owned(kept), left_out)
}

#[cfg(test)]
mod tests {
    use mesh_xds::proto::wkt::{value::Kind, Struct, Value};

    use super::*;

    fn node(id: &str, keys: &[&str]) -> Node {
        Node {
            id: id.into(),
            metadata: Some(Struct {
                fields: keys
                    .iter()
                    .map(|k| {
                        let v = Value {
                            kind: Some(Kind::StringValue("x".into())),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_ztunnel_is_a_ztunnel_node_without_our_key() {
        let id = "ztunnel~10.0.0.1~ztunnel-abcde.istio-system~istio-system.svc.cluster.local";
        assert!(is_ztunnel(&node(id, &["NAME", "NAMESPACE", "NODE_NAME"])));
        assert!(!is_ztunnel(&node(id, &["NAME", MESH_AGENT_VERSION])));
        for other in [
            "agent~node1~mesh",
            "waypoint~10.0.0.9~wp-0.a~a.svc.cluster.local",
            "sidecar~10.0.0.9~p.a~a.svc.cluster.local",
            "",
        ] {
            assert!(!is_ztunnel(&node(other, &[])), "{other}");
        }
    }

    #[test]
    fn only_actions_outside_istios_enum_are_withheld() {
        let policy = |action| Authorization {
            action,
            ..Default::default()
        };
        let all = [
            ("ns/allow".to_string(), policy(0)),
            ("ns/deny".to_string(), policy(1)),
            ("ns/audit".to_string(), policy(2)),
        ];
        let names = withheld(all.iter().map(|(n, p)| (n, p)));
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["ns/audit"]);
    }
}
