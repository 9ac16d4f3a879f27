//! The CNI commands: what the plugin prints on stdout and its exit status
//! for one invocation. Pure over (environment, stdin) so tests drive it
//! without a runtime.
use std::{collections::BTreeMap, time::Duration};

use crate::{
    api::{self, AddReply, DelRequest, PodRequest},
    args::{self, CniEnv, Command},
    client,
    config::{NetConf, SUPPORTED_VERSIONS},
    error::{CniError, Code},
};

/// What to print and how to exit.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub stdout: Option<serde_json::Value>,
    pub success: bool,
}

/// Runs one CNI invocation.
pub fn run(env: &BTreeMap<String, String>, stdin: &[u8]) -> Outcome {
    // Errors name the configuration's version when it is readable.
    let version = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.0.0".into());
    match dispatch(env, stdin) {
        Ok(stdout) => Outcome {
            stdout,
            success: true,
        },
        Err(error) => {
            tracing::error!(code = error.code, msg = %error.msg, details = %error.details, "CNI command failed");
            Outcome {
                stdout: Some(error.to_json(&version)),
                success: false,
            }
        }
    }
}

fn dispatch(
    env: &BTreeMap<String, String>,
    stdin: &[u8],
) -> Result<Option<serde_json::Value>, CniError> {
    let command = args::command(env)?;
    if command == Command::Version {
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "1.0.0".into());
        return Ok(Some(serde_json::json!({
            "cniVersion": asked,
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    let conf = NetConf::parse(stdin)?;
    let cni = args::parse(env, command)?;
    match command {
        Command::Add => add(&conf, &cni).map(Some),
        Command::Check => check(&conf, &cni).map(|()| None),
        Command::Del => {
            del(&conf, &cni);
            Ok(None)
        }
        Command::Version => unreachable!("answered above"),
    }
}

/// The pod's request, or `None` when the agent need not be asked: not a
/// Kubernetes pod (no `K8S_POD_*` in `CNI_ARGS`) or an excluded namespace.
fn pod_request(conf: &NetConf, cni: &CniEnv) -> Option<PodRequest> {
    let (Some(namespace), Some(name)) = (cni.pod_namespace(), cni.pod_name()) else {
        tracing::info!(container = %cni.container_id, "no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS: not a pod, not asking the agent");
        return None;
    };
    if conf.exclude_namespaces.iter().any(|n| n == namespace) {
        tracing::info!(pod = %format!("{namespace}/{name}"), "namespace excluded by the plugin config: not asking the agent");
        return None;
    }
    Some(PodRequest {
        container_id: cni.container_id.clone(),
        netns: cni.netns.clone(),
        if_name: cni.if_name.clone(),
        pod_namespace: namespace.to_string(),
        pod_name: name.to_string(),
        pod_uid: cni.pod_uid().to_string(),
        ips: conf.prev_ips(),
    })
}

fn timeout(conf: &NetConf) -> Duration {
    Duration::from_secs(conf.agent_timeout_seconds)
}

/// Sends the pod's request to the agent's `path`: `None` when the sandbox
/// is no pod to ask about, else the pod (`ns/name`) and the agent's reply;
/// an agent that cannot be reached is "try again later".
fn ask(
    conf: &NetConf,
    cni: &CniEnv,
    path: &str,
) -> Result<Option<(String, client::Reply)>, CniError> {
    let Some(request) = pod_request(conf, cni) else {
        return Ok(None);
    };
    let pod = format!("{}/{}", request.pod_namespace, request.pod_name);
    let body = serde_json::to_value(&request).expect("plain struct serializes");
    let reply = client::post(&conf.agent_socket, path, &body, timeout(conf)).map_err(|e| {
        CniError::new(
            Code::TryAgainLater,
            "the mesh node agent is unreachable",
            format!("pod {pod}: {}", chain(&e)),
        )
    })?;
    Ok(Some((pod, reply)))
}

fn add(conf: &NetConf, cni: &CniEnv) -> Result<serde_json::Value, CniError> {
    let result = conf.passthrough_result()?;
    // Fail closed: whatever stops the agent from answering fails the ADD,
    // so the runtime retries and the pod never runs uncaptured.
    let Some((pod, reply)) = ask(conf, cni, api::ADD_PATH)? else {
        return Ok(result);
    };
    match reply.status {
        200 => {
            let decided: AddReply = serde_json::from_str(&reply.body).map_err(|e| {
                CniError::new(
                    Code::Decode,
                    "cannot decode the agent's answer",
                    format!("pod {pod}: {e}: {}", reply.body),
                )
            })?;
            tracing::info!(%pod, enrolled = decided.enrolled, reason = %decided.reason, "agent decided");
            Ok(result)
        }
        503 => Err(CniError::new(
            Code::TryAgainLater,
            "the mesh node agent cannot decide yet",
            format!("pod {pod}: {}", reply.body.trim()),
        )),
        status => Err(CniError::new(
            Code::Io,
            "the mesh node agent refused the pod",
            format!("pod {pod}: HTTP {status}: {}", reply.body.trim()),
        )),
    }
}

fn check(conf: &NetConf, cni: &CniEnv) -> Result<(), CniError> {
    conf.passthrough_result()?;
    let Some((pod, reply)) = ask(conf, cni, api::CHECK_PATH)? else {
        return Ok(());
    };
    match reply.status {
        200 => Ok(()),
        409 => Err(CniError::new(
            Code::CheckFailed,
            "pod enrolment does not match the mesh",
            format!("pod {pod}: {}", reply.body.trim()),
        )),
        status => Err(CniError::new(
            Code::TryAgainLater,
            "the mesh node agent cannot check the pod",
            format!("pod {pod}: HTTP {status}: {}", reply.body.trim()),
        )),
    }
}

/// DEL never fails because of the agent: a stuck DEL would keep the
/// runtime from freeing the sandbox, and the agent drops records of gone
/// namespaces when it next reconciles.
fn del(conf: &NetConf, cni: &CniEnv) {
    let request = DelRequest {
        container_id: cni.container_id.clone(),
        netns: (!cni.netns.is_empty()).then(|| cni.netns.clone()),
    };
    let body = serde_json::to_value(&request).expect("plain struct serializes");
    match client::post(&conf.agent_socket, api::DEL_PATH, &body, timeout(conf)) {
        Ok(reply) if reply.status == 200 => {
            tracing::info!(container = %cni.container_id, "agent released the pod");
        }
        Ok(reply) => {
            tracing::warn!(container = %cni.container_id, status = reply.status, body = %reply.body.trim(), "agent did not accept DEL; it reconciles on its own")
        }
        Err(error) => {
            tracing::warn!(container = %cni.container_id, error = %chain(&error), "agent unreachable on DEL; it reconciles on its next start")
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
