//! The ports a pod's kubelet probes connect to. The kubelet probes from the
//! node address in plaintext, which the kernel drops for a STRICT pod
//! unless the agent declares the port in `probe_ports`; these ports are
//! what it declares.
//!
//! Read from every container of `spec.containers` and
//! `spec.initContainers` (restartable init containers, sidecars, are probed
//! too): `httpGet.port` and `tcpSocket.port` (a number, or the name of one of
//! that container's `ports[]`) and `grpc.port` (a number) of its
//! `livenessProbe`, `readinessProbe` and `startupProbe`. `exec` probes run
//! inside the pod and need no port. A `host` on a probe is not looked at:
//! its port is declared for the pod all the same.
use std::collections::BTreeMap;

use serde_yaml::Value;

use super::{
    fields::{self, lookup, Reporter},
    objects::Origin,
};

const CONTAINER_LISTS: [&str; 2] = ["spec.containers", "spec.initContainers"];
const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];

/// The probe ports of `pod`, sorted and without duplicates. Wrong types are
/// problems of `rep`; a port name no container port has is a warning (the
/// kubelet's probe fails the same way).
pub(crate) fn probe_ports(
    rep: &mut Reporter<'_>,
    pod: &Value,
    origin: &Origin,
    warnings: &mut Vec<String>,
) -> Vec<u16> {
    let mut out = vec![];
    for list in CONTAINER_LISTS {
        for (i, container) in fields::seq(rep, pod, list).iter().enumerate() {
            let path = format!("{list}[{i}]");
            if !is_mapping(rep, &path, container) {
                continue;
            }
            let named = named_ports(rep, &path, container);
            for probe in PROBES {
                let probe_path = format!("{path}.{probe}");
                let Some(probe) = mapping_at(rep, container, probe, &probe_path) else {
                    continue;
                };
                let mut cx = Cx {
                    rep: &mut *rep,
                    origin,
                    warnings: &mut *warnings,
                    named: &named,
                };
                out.extend(cx.handler_port(probe, &probe_path, "httpGet", true));
                out.extend(cx.handler_port(probe, &probe_path, "tcpSocket", true));
                out.extend(cx.handler_port(probe, &probe_path, "grpc", false));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

struct Cx<'a, 'r> {
    rep: &'a mut Reporter<'r>,
    origin: &'a Origin,
    warnings: &'a mut Vec<String>,
    named: &'a BTreeMap<String, u16>,
}

impl Cx<'_, '_> {
    /// The port of one probe handler (`httpGet`, …), when the probe has it.
    fn handler_port(
        &mut self,
        probe: &Value,
        probe_path: &str,
        handler: &str,
        by_name: bool,
    ) -> Option<u16> {
        let path = format!("{probe_path}.{handler}");
        let handler = mapping_at(self.rep, probe, handler, &path)?;
        let field = format!("{path}.port");
        let Some(port) = lookup(handler, "port") else {
            self.rep.error(field, "required field is missing");
            return None;
        };
        match port {
            Value::String(name) if by_name => {
                let resolved = self.named.get(name).copied();
                if resolved.is_none() {
                    self.warnings.push(format!(
                        "{}: {}: {field}: the container has no port named {name:?}; \
                         the kubelet's probe fails and no probe port is declared for it",
                        self.origin.file, self.origin.resource
                    ));
                }
                resolved
            }
            other => fields::port(self.rep, &field, other),
        }
    }
}

/// `ports[].name` → `ports[].containerPort` of one container.
fn named_ports(
    rep: &mut Reporter<'_>,
    container_path: &str,
    container: &Value,
) -> BTreeMap<String, u16> {
    let mut out = BTreeMap::new();
    let ports_path = format!("{container_path}.ports");
    let ports = match lookup(container, "ports") {
        None => return out,
        Some(Value::Sequence(ports)) => ports,
        Some(other) => {
            rep.error(
                ports_path,
                format!("expected a list, found {}", fields::type_name(other)),
            );
            return out;
        }
    };
    for (i, entry) in ports.iter().enumerate() {
        let path = format!("{ports_path}[{i}]");
        if !is_mapping(rep, &path, entry) {
            continue;
        }
        let name = match lookup(entry, "name") {
            None => continue,
            Some(Value::String(name)) => name.clone(),
            Some(other) => {
                rep.error(
                    format!("{path}.name"),
                    format!("expected a string, found {}", fields::type_name(other)),
                );
                continue;
            }
        };
        let field = format!("{path}.containerPort");
        match lookup(entry, "containerPort") {
            Some(port) => {
                if let Some(port) = fields::port(rep, &field, port) {
                    out.insert(name, port);
                }
            }
            None => rep.error(field, "required field is missing"),
        }
    }
    out
}

/// `parent.key` when it is a mapping; absent is `None`, another type a
/// problem at `path`.
fn mapping_at<'v>(
    rep: &mut Reporter<'_>,
    parent: &'v Value,
    key: &str,
    path: &str,
) -> Option<&'v Value> {
    let value = lookup(parent, key)?;
    is_mapping(rep, path, value).then_some(value)
}

fn is_mapping(rep: &mut Reporter<'_>, path: &str, value: &Value) -> bool {
    if value.is_mapping() {
        return true;
    }
    rep.error(
        path,
        format!("expected a mapping, found {}", fields::type_name(value)),
    );
    false
}

#[cfg(test)]
mod tests;
