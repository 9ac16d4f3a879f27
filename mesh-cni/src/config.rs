//! The plugin's network configuration, read from stdin: the conflist's
//! common keys (`cniVersion`, `name`, `type`, `prevResult`, injected by the
//! runtime) and this plugin's own keys.
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{CniError, Code};

/// CNI versions this plugin speaks (its result is the previous plugin's,
/// whose shape the runtime already negotiated).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// The result of the plugins before this one (chained plugins only).
    #[serde(default)]
    pub prev_result: Option<serde_json::Value>,
    /// The node agent's CNI socket.
    #[serde(default = "default_socket")]
    pub agent_socket: PathBuf,
    /// Pods of these namespaces never wait for the agent (the mesh's own
    /// and the cluster's system pods must start even when the agent is down).
    #[serde(default = "default_excluded")]
    pub exclude_namespaces: Vec<String>,
    /// How long one call to the agent may take, seconds. Longer than the
    /// agent's `--enroll-wait`, so the agent's own answer (503) comes first.
    #[serde(default = "default_timeout")]
    pub agent_timeout_seconds: u64,
    /// Log file; stderr when unset (stdout is the CNI protocol).
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax).
    #[serde(default = "default_log_level")]
    pub log_level: String,
}

fn default_socket() -> PathBuf {
    PathBuf::from(crate::api::DEFAULT_SOCKET)
}

fn default_excluded() -> Vec<String> {
    // istio-system too: mesh-control's own pod must start while no
    // control plane runs (first install, its only replica rescheduled),
    // and the agent could not decide for it without one.
    vec!["kube-system".into(), "istio-system".into()]
}

fn default_timeout() -> u64 {
    30
}

fn default_log_level() -> String {
    "info".into()
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let conf: Self = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                Code::Decode,
                "cannot decode the network configuration on stdin",
                e.to_string(),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                "unsupported cniVersion",
                format!(
                    "cniVersion {:?} is not one of {}",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if conf.agent_timeout_seconds == 0 {
            return Err(CniError::new(
                Code::InvalidConfig,
                "invalid network configuration",
                "agentTimeoutSeconds must be at least 1",
            ));
        }
        Ok(conf)
    }

    /// The result ADD prints: the previous result unchanged except its
    /// `cniVersion`, which must be the configuration's.
    pub fn passthrough_result(&self) -> Result<serde_json::Value, CniError> {
        let Some(prev) = &self.prev_result else {
            return Err(CniError::new(
                Code::InvalidConfig,
                "mesh-cni must be chained",
                format!(
                    "network {:?} gave no prevResult: put mesh-cni after the plugin that sets up the interface",
                    self.name
                ),
            ));
        };
        let mut result = prev.clone();
        match result.as_object_mut() {
            Some(obj) => {
                obj.insert(
                    "cniVersion".into(),
                    serde_json::Value::String(self.cni_version.clone()),
                );
            }
            None => {
                return Err(CniError::new(
                    Code::Decode,
                    "cannot decode prevResult",
                    "prevResult is not a JSON object",
                ))
            }
        }
        Ok(result)
    }

    /// The pod's addresses from `prevResult.ips[].address` (CIDR), prefix
    /// lengths dropped. 0.3.x/0.4.0/1.0.0 results all have this shape.
    pub fn prev_ips(&self) -> Vec<String> {
        self.prev_result
            .as_ref()
            .and_then(|r| r.get("ips"))
            .and_then(|ips| ips.as_array())
            .map(|ips| {
                ips.iter()
                    .filter_map(|ip| ip.get("address")?.as_str())
                    .map(|cidr| cidr.split('/').next().unwrap_or(cidr).to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREV: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.22.0.5/24","gateway":"10.22.0.1","interface":0}],"dns":{}}"#;

    fn conf(extra: &str) -> Vec<u8> {
        format!(r#"{{"cniVersion":"1.0.0","name":"k8s","type":"mesh-cni"{extra}}}"#).into_bytes()
    }

    #[test]
    fn defaults_apply() {
        let c = NetConf::parse(&conf("")).unwrap();
        assert_eq!(c.agent_socket, PathBuf::from("/var/run/mesh/cni.sock"));
        assert_eq!(c.exclude_namespaces, ["kube-system", "istio-system"]);
        assert_eq!(c.agent_timeout_seconds, 30);
        assert!(c.prev_result.is_none());
    }

    #[test]
    fn own_keys_are_read() {
        let c = NetConf::parse(&conf(
            r#","agentSocket":"/tmp/a.sock","excludeNamespaces":["a","b"],"agentTimeoutSeconds":5"#,
        ))
        .unwrap();
        assert_eq!(c.agent_socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.exclude_namespaces, vec!["a", "b"]);
        assert_eq!(c.agent_timeout_seconds, 5);
    }

    #[test]
    fn bad_input_is_named() {
        let e = NetConf::parse(b"{not json").unwrap_err();
        assert_eq!(e.code, Code::Decode as u32);
        let e = NetConf::parse(br#"{"cniVersion":"9.9.9"}"#).unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion as u32);
        assert!(e.details.contains("9.9.9"), "{e}");
        let e = NetConf::parse(&conf(r#","agentTimeoutSeconds":0"#)).unwrap_err();
        assert!(e.details.contains("agentTimeoutSeconds"), "{e}");
    }

    #[test]
    fn prev_result_passes_through_with_the_config_version() {
        let c = NetConf::parse(&conf(&format!(r#","prevResult":{PREV}"#))).unwrap();
        let out = c.passthrough_result().unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(PREV).unwrap();
        assert_eq!(out, expected);
        let c = NetConf::parse(
            format!(
                r#"{{"cniVersion":"0.4.0","name":"k8s","type":"mesh-cni","prevResult":{PREV}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        expected["cniVersion"] = "0.4.0".into();
        assert_eq!(c.passthrough_result().unwrap(), expected);
        assert_eq!(c.prev_ips(), vec!["10.22.0.5".to_string()]);
    }

    #[test]
    fn unchained_add_is_an_error() {
        let c = NetConf::parse(&conf("")).unwrap();
        let e = c.passthrough_result().unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig as u32);
        assert!(e.details.contains("prevResult"), "{e}");
    }
}
