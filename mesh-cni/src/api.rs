//! The node agent's CNI API (docs/contracts/cni-api.md): HTTP/1.1
//! with JSON bodies on a Unix socket. Shared by the plugin (client) and
//! `mesh-agent` (server) so the two cannot drift apart.
use serde::{Deserialize, Serialize};

/// Default socket path, on the hostPath shared by agent and plugin.
pub const DEFAULT_SOCKET: &str = "/var/run/mesh/cni.sock";
pub const ADD_PATH: &str = "/v1/cni/add";
pub const DEL_PATH: &str = "/v1/cni/del";
pub const CHECK_PATH: &str = "/v1/cni/check";

/// `POST /v1/cni/add` and `/v1/cni/check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRequest {
    pub container_id: String,
    /// Path of the pod's network namespace (`CNI_NETNS`).
    pub netns: String,
    #[serde(default)]
    pub if_name: String,
    pub pod_namespace: String,
    pub pod_name: String,
    #[serde(default)]
    pub pod_uid: String,
    /// The addresses the earlier plugins gave the pod (without prefix length).
    #[serde(default)]
    pub ips: Vec<String>,
}

/// `200` answer of add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddReply {
    pub enrolled: bool,
    pub reason: String,
}

/// `POST /v1/cni/del`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelRequest {
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_request_uses_the_contract_field_names() {
        let req = PodRequest {
            container_id: "c1".into(),
            netns: "/run/netns/p".into(),
            if_name: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: "u1".into(),
            ips: vec!["10.0.0.2".into()],
        };
        let json = serde_json::to_value(&req).unwrap();
        for key in [
            "containerId",
            "netns",
            "ifName",
            "podNamespace",
            "podName",
            "podUid",
            "ips",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        let back: PodRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, req);
    }
}
