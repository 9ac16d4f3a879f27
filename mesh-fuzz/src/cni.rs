//! The CNI side: the network configuration the runtime writes on stdin,
//! `CNI_ARGS`, and the JSON bodies of the node agent's CNI API.
use mesh_cni::{
    api::{DelRequest, PodRequest},
    args::parse_cni_args,
    config::NetConf,
};

/// Input: any bytes, read as stdin JSON, as `CNI_ARGS` text and as the
/// agent API's request bodies.
pub fn cni_api(data: &[u8]) {
    if let Ok(conf) = NetConf::parse(data) {
        let _ = conf.prev_ips();
        let _ = conf.passthrough_result();
    }
    let _ = parse_cni_args(&String::from_utf8_lossy(data));
    // What the plugin sends must be what the agent reads back.
    if let Ok(req) = serde_json::from_slice::<PodRequest>(data) {
        let again = serde_json::to_vec(&req).expect("PodRequest serializes");
        assert_eq!(serde_json::from_slice::<PodRequest>(&again).ok(), Some(req));
    }
    if let Ok(req) = serde_json::from_slice::<DelRequest>(data) {
        let again = serde_json::to_vec(&req).expect("DelRequest serializes");
        assert_eq!(serde_json::from_slice::<DelRequest>(&again).ok(), Some(req));
    }
}
