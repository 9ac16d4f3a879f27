//! How a node proxy names itself to its control plane, in the form istiod
//! expects of a node proxy and Istio's ztunnel sends
//! (docs/contracts/workload-xds.md, "Node identity"):
//!
//! - `Node.id` = `ztunnel~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`
//!   (istiod refuses ids that are not four `~`-separated parts of a known
//!   proxy type; `ztunnel` gets the workload-discovery types);
//! - `Node.metadata` strings `NAME` (the proxy's pod), `NAMESPACE`,
//!   `INSTANCE_IPS`, `NODE_NAME`, `CLUSTER_ID`, and, from our agent only,
//!   [`MESH_AGENT_VERSION`], by which our control plane tells its own agent
//!   from a ztunnel;
//! - gRPC metadata `clusterid: <cluster>` on the xDS stream and on
//!   certificate requests (istiod picks the cluster whose API server
//!   reviews the token by it).
use std::{collections::BTreeMap, net::IpAddr};

use tonic::metadata::{AsciiMetadataValue, MetadataMap};

/// The node type of a node proxy (ztunnel's, and our agent's).
pub const NODE_PROXY_TYPE: &str = "ztunnel";
/// gRPC metadata naming the caller's cluster.
pub const CLUSTER_ID_HEADER: &str = "clusterid";
/// Istio's default cluster name.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";
/// The DNS domain part of a node proxy's id (ztunnel's is fixed too).
const NODE_DNS_DOMAIN: &str = "svc.cluster.local";

/// Node metadata keys, as ztunnel and istiod spell them.
pub mod keys {
    /// The proxy's own pod name.
    pub const NAME: &str = "NAME";
    /// The proxy's own pod namespace.
    pub const NAMESPACE: &str = "NAMESPACE";
    /// The proxy's addresses (comma-separated).
    pub const INSTANCE_IPS: &str = "INSTANCE_IPS";
    /// The Kubernetes node the proxy serves.
    pub const NODE_NAME: &str = "NODE_NAME";
    /// The cluster the proxy runs in.
    pub const CLUSTER_ID: &str = "CLUSTER_ID";
}

/// Node metadata key our agent adds (its version) and ztunnel never
/// sends: a stream that carries it is our agent's, one of node type
/// `ztunnel` without it is Istio's ztunnel.
pub const MESH_AGENT_VERSION: &str = "MESH_AGENT_VERSION";

/// Who a node proxy is, for the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProxyIdentity {
    /// The proxy's address (a hostNetwork DaemonSet pod: the node's).
    pub ip: IpAddr,
    pub pod_name: String,
    pub pod_namespace: String,
    /// Kubernetes node name (the pods' `spec.nodeName`).
    pub node_name: String,
    pub cluster_id: String,
    /// Our agent's version, sent as [`MESH_AGENT_VERSION`]; `None` for a
    /// client that presents itself exactly as ztunnel does.
    pub agent_version: Option<String>,
}

impl NodeProxyIdentity {
    /// `ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        let ns = &self.pod_namespace;
        format!(
            "{NODE_PROXY_TYPE}~{}~{}.{ns}~{ns}.{NODE_DNS_DOMAIN}",
            self.ip, self.pod_name
        )
    }

    /// The node metadata (strings).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut meta = BTreeMap::from([
            (keys::NAME.to_string(), self.pod_name.clone()),
            (keys::NAMESPACE.to_string(), self.pod_namespace.clone()),
            (keys::INSTANCE_IPS.to_string(), self.ip.to_string()),
            (keys::NODE_NAME.to_string(), self.node_name.clone()),
            (keys::CLUSTER_ID.to_string(), self.cluster_id.clone()),
        ]);
        if let Some(version) = &self.agent_version {
            meta.insert(MESH_AGENT_VERSION.to_string(), version.clone());
        }
        meta
    }

    /// Sets the node id, metadata and `clusterid` header of `cfg`.
    pub fn apply(&self, cfg: &mut super::XdsClientConfig) {
        cfg.node_id = self.node_id();
        cfg.node_metadata = self.metadata();
        cfg.cluster_id = Some(self.cluster_id.clone());
    }
}

/// A cluster id that cannot be sent as gRPC metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cluster id {0:?} is not a valid `clusterid` header value (visible ASCII only)")]
pub struct InvalidClusterId(pub String);

/// The `clusterid` header value for `cluster_id`.
pub fn cluster_id_header(cluster_id: &str) -> Result<AsciiMetadataValue, InvalidClusterId> {
    if cluster_id.is_empty() || !cluster_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidClusterId(cluster_id.to_string()));
    }
    cluster_id
        .parse()
        .map_err(|_| InvalidClusterId(cluster_id.to_string()))
}

/// Adds `clusterid: <cluster_id>` to `metadata` when there is one.
pub fn insert_cluster_id(
    metadata: &mut MetadataMap,
    cluster_id: Option<&str>,
) -> Result<(), InvalidClusterId> {
    if let Some(id) = cluster_id {
        metadata.insert(CLUSTER_ID_HEADER, cluster_id_header(id)?);
    }
    Ok(())
}

/// The parts of an Istio node id `<type>~<ip>~<pod>.<ns>~<domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedNodeId<'a> {
    pub node_type: &'a str,
    pub ip: &'a str,
    /// `<pod>.<namespace>` as written.
    pub id: &'a str,
    pub domain: &'a str,
}

impl ParsedNodeId<'_> {
    /// The pod and namespace of [`Self::id`], split at its last `.`.
    pub fn pod(&self) -> Option<(&str, &str)> {
        self.id
            .rsplit_once('.')
            .filter(|(pod, ns)| !pod.is_empty() && !ns.is_empty())
    }
}

/// Splits an Istio node id into its four parts; `None` when it is not one.
pub fn parse_node_id(id: &str) -> Option<ParsedNodeId<'_>> {
    let mut parts = id.split('~');
    let parsed = ParsedNodeId {
        node_type: parts.next().filter(|s| !s.is_empty())?,
        ip: parts.next()?,
        id: parts.next()?,
        domain: parts.next()?,
    };
    parts.next().is_none().then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> NodeProxyIdentity {
        NodeProxyIdentity {
            ip: "10.0.0.1".parse().unwrap(),
            pod_name: "mesh-agent-x7k2p".into(),
            pod_namespace: "istio-system".into(),
            node_name: "node1".into(),
            cluster_id: "Kubernetes".into(),
            agent_version: Some("0.1.0".into()),
        }
    }

    #[test]
    fn node_id_and_metadata_have_ztunnels_shape() {
        let a = agent();
        assert_eq!(
            a.node_id(),
            "ztunnel~10.0.0.1~mesh-agent-x7k2p.istio-system~istio-system.svc.cluster.local"
        );
        let meta = a.metadata();
        assert_eq!(meta["NAME"], "mesh-agent-x7k2p");
        assert_eq!(meta["NAMESPACE"], "istio-system");
        assert_eq!(meta["INSTANCE_IPS"], "10.0.0.1");
        assert_eq!(meta["NODE_NAME"], "node1");
        assert_eq!(meta["CLUSTER_ID"], "Kubernetes");
        assert_eq!(meta["MESH_AGENT_VERSION"], "0.1.0");
        let plain = NodeProxyIdentity {
            agent_version: None,
            ..a
        };
        assert!(!plain.metadata().contains_key(MESH_AGENT_VERSION));
    }

    #[test]
    fn node_ids_parse_into_four_parts() {
        let id = agent().node_id();
        let p = parse_node_id(&id).unwrap();
        assert_eq!(p.node_type, "ztunnel");
        assert_eq!(p.ip, "10.0.0.1");
        assert_eq!(p.pod(), Some(("mesh-agent-x7k2p", "istio-system")));
        assert_eq!(p.domain, "istio-system.svc.cluster.local");
        for bad in ["", "node-1", "agent~node1~mesh", "a~b~c~d~e", "~1~p.n~d"] {
            assert_eq!(parse_node_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn cluster_id_header_is_visible_ascii() {
        let mut md = MetadataMap::new();
        insert_cluster_id(&mut md, Some("Kubernetes")).unwrap();
        assert_eq!(md.get("clusterid").unwrap(), "Kubernetes");
        insert_cluster_id(&mut md, None).unwrap();
        assert_eq!(md.len(), 1);
        for bad in ["", "two words", "clüster"] {
            assert!(cluster_id_header(bad).is_err(), "{bad:?}");
        }
    }
}
