//! How the agent presents itself to its control plane: as Istio's ztunnel
//! does (mesh_xds::client::node_identity), so it runs under istiod as well
//! as under mesh-control, plus node metadata `MESH_AGENT_VERSION`, by
//! which mesh-control tells it from a ztunnel.
use std::net::IpAddr;

use mesh_xds::{client::node_identity::NodeProxyIdentity, XdsClientConfig};

use super::ca_client::CaRequest;
use crate::config::MeshConfig;

/// This agent's node-proxy identity; `ip` is the node address it serves on.
pub fn identity(mesh: &MeshConfig, ip: IpAddr) -> NodeProxyIdentity {
    NodeProxyIdentity {
        ip,
        pod_name: mesh.pod_name.clone(),
        pod_namespace: mesh.pod_namespace.clone(),
        node_name: mesh.node_name.clone(),
        cluster_id: mesh.cluster_id.clone(),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
    }
}

/// The xDS client settings: node id, metadata and `clusterid` header of
/// [`identity`], the Address and Authorization subscriptions, the token.
pub fn xds_config(mesh: &MeshConfig, ip: IpAddr) -> XdsClientConfig {
    let mut cfg = XdsClientConfig::new(mesh.xds_address.clone(), String::new());
    identity(mesh, ip).apply(&mut cfg);
    cfg.token = mesh.token_file.clone().map(mesh_xds::token::TokenFile::new);
    cfg
}

/// How certificate requests present themselves: impersonating the pod,
/// with the `clusterid` header.
pub fn ca_request(mesh: &MeshConfig) -> CaRequest {
    CaRequest {
        impersonate: true,
        cluster_id: Some(mesh.cluster_id.clone()),
    }
}

#[cfg(test)]
mod tests;
