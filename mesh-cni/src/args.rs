//! The CNI environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`), taken as a map so tests never set
//! process environment.
use std::collections::BTreeMap;

use crate::error::{CniError, Code};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniEnv {
    pub container_id: String,
    pub netns: String,
    pub if_name: String,
    /// `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`, … from `CNI_ARGS`.
    pub args: BTreeMap<String, String>,
}

impl CniEnv {
    pub fn pod_namespace(&self) -> Option<&str> {
        self.args.get("K8S_POD_NAMESPACE").map(String::as_str)
    }
    pub fn pod_name(&self) -> Option<&str> {
        self.args.get("K8S_POD_NAME").map(String::as_str)
    }
    pub fn pod_uid(&self) -> &str {
        self.args.get("K8S_POD_UID").map_or("", String::as_str)
    }
}

/// `CNI_COMMAND`.
pub fn command(env: &BTreeMap<String, String>) -> Result<Command, CniError> {
    match env.get("CNI_COMMAND").map(String::as_str) {
        Some("ADD") => Ok(Command::Add),
        Some("DEL") => Ok(Command::Del),
        Some("CHECK") => Ok(Command::Check),
        Some("VERSION") => Ok(Command::Version),
        other => Err(CniError::new(
            Code::InvalidEnvironment,
            "invalid CNI_COMMAND",
            format!("CNI_COMMAND is {other:?}; expected ADD, DEL, CHECK or VERSION"),
        )),
    }
}

/// The variables `command` needs; ADD and CHECK need a netns, DEL may
/// come without one (the spec allows it once the sandbox is gone).
pub fn parse(env: &BTreeMap<String, String>, command: Command) -> Result<CniEnv, CniError> {
    let get = |k: &str| env.get(k).cloned().unwrap_or_default();
    let parsed = CniEnv {
        container_id: get("CNI_CONTAINERID"),
        netns: get("CNI_NETNS"),
        if_name: get("CNI_IFNAME"),
        args: parse_cni_args(&get("CNI_ARGS"))?,
    };
    let missing = |var: &str| {
        CniError::new(
            Code::InvalidEnvironment,
            "missing CNI environment variable",
            format!("{var} is required for {command:?}"),
        )
    };
    if command != Command::Version && parsed.container_id.is_empty() {
        return Err(missing("CNI_CONTAINERID"));
    }
    if matches!(command, Command::Add | Command::Check) && parsed.netns.is_empty() {
        return Err(missing("CNI_NETNS"));
    }
    Ok(parsed)
}

/// `CNI_ARGS`: `K=V;K=V`.
pub fn parse_cni_args(text: &str) -> Result<BTreeMap<String, String>, CniError> {
    text.split(';')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    CniError::new(
                        Code::InvalidEnvironment,
                        "invalid CNI_ARGS",
                        format!("CNI_ARGS entry {kv:?} is not KEY=VALUE"),
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubernetes_args_are_read() {
        let e = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_UID=u-1",
            ),
        ]);
        let cmd = command(&e).unwrap();
        assert_eq!(cmd, Command::Add);
        let p = parse(&e, cmd).unwrap();
        assert_eq!(p.pod_namespace(), Some("default"));
        assert_eq!(p.pod_name(), Some("web-1"));
        assert_eq!(p.pod_uid(), "u-1");
        assert_eq!(p.netns, "/run/netns/x");
    }

    #[test]
    fn missing_and_bad_variables_are_named() {
        let e = command(&env(&[("CNI_COMMAND", "GC")])).unwrap_err();
        assert!(e.details.contains("GC"), "{e}");
        let e = parse(&env(&[("CNI_CONTAINERID", "c")]), Command::Add).unwrap_err();
        assert!(e.details.contains("CNI_NETNS"), "{e}");
        // DEL without a netns is fine.
        parse(&env(&[("CNI_CONTAINERID", "c")]), Command::Del).unwrap();
        let e = parse_cni_args("K8S_POD_NAME").unwrap_err();
        assert!(e.details.contains("K8S_POD_NAME"), "{e}");
    }
}
