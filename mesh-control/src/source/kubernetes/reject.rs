//! Telling the cluster what the source rejected, where `kubectl` shows it:
//! a core v1 Event (`type: Warning`, `reason: Rejected`) on the resource,
//! once per content version, and for Istio / Gateway API kinds a
//! merge-patch of the status subresource with condition
//! `Accepted=False, reason Invalid` (`True` once a version is accepted
//! again). Also the Gateway API status of accepted Gateways (class
//! `istio`) and HTTPRoutes, whenever it changes. Runs as its own task fed by a channel, so a slow or failing API
//! server never delays publishing the mesh state; failures are logged.
use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{
    api::{Api, DynamicObject, Patch, PatchParams, PostParams},
    discovery::ApiResource,
    Client,
};
use serde_json::json;
use tokio::sync::mpsc;

use super::store::{Key, Stored};

/// Who the events say reported them.
const COMPONENT: &str = "mesh-control";

/// One thing to tell the cluster.
#[derive(Debug, Clone)]
pub enum Report {
    /// A version of `key` was rejected for `message`.
    Rejected {
        key: Key,
        resource: ApiResource,
        has_status: bool,
        stored: Stored,
        message: String,
    },
    /// `key` (previously reported rejected) has an accepted version again.
    Accepted {
        key: Key,
        resource: ApiResource,
        stored: Stored,
    },
    /// The Gateway API status the source computed for `key` (an
    /// HTTPRoute's `parents`, a Gateway's `conditions` and `listeners`):
    /// merge-patched into its `status`.
    GatewayApi {
        key: Key,
        resource: ApiResource,
        status: serde_json::Value,
    },
}

/// Spawns the reporting task; send it [`Report`]s.
pub fn spawn(client: Client) -> (mpsc::UnboundedSender<Report>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(report) = rx.recv().await {
            report_one(&client, report).await;
        }
    });
    (tx, task)
}

async fn report_one(client: &Client, report: Report) {
    match report {
        Report::Rejected {
            key,
            resource,
            has_status,
            stored,
            message,
        } => {
            if let Err(error) = post_event(client, &key, &resource, &stored, &message).await {
                tracing::warn!(resource = %key, "cannot record the rejection event: {error}");
            }
            if has_status {
                let condition = condition("False", "Invalid", &message, &stored);
                if let Err(error) = patch_status(client, &key, &resource, condition).await {
                    tracing::warn!(resource = %key, "cannot set status Accepted=False: {error}");
                }
            }
        }
        Report::Accepted {
            key,
            resource,
            stored,
        } => {
            let condition = condition("True", "Accepted", "accepted by mesh-control", &stored);
            if let Err(error) = patch_status(client, &key, &resource, condition).await {
                tracing::warn!(resource = %key, "cannot set status Accepted=True: {error}");
            }
        }
        Report::GatewayApi {
            key,
            resource,
            status,
        } => {
            let patch = json!({ "status": status });
            if let Err(error) = merge_status(client, &key, &resource, &patch).await {
                tracing::warn!(resource = %key, "cannot write the Gateway API status: {error}");
            } else {
                tracing::debug!(resource = %key, "Gateway API status written");
            }
        }
    }
}

/// The core v1 Event of a rejection. Cluster-scoped objects' events go to
/// `default`, as kubectl does.
pub fn rejection_event(key: &Key, resource: &ApiResource, stored: &Stored, message: &str) -> Event {
    let namespace = if key.namespace.is_empty() {
        "default".to_string()
    } else {
        key.namespace.clone()
    };
    let now = Time(Timestamp::now());
    let uid = stored.value["metadata"]["uid"].as_str().map(str::to_string);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:016x}", key.name, rand::random::<u64>())),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(resource.api_version.clone()),
            kind: Some(resource.kind.clone()),
            name: Some(key.name.clone()),
            namespace: (!key.namespace.is_empty()).then(|| key.namespace.clone()),
            uid,
            resource_version: Some(stored.resource_version.clone()),
            ..ObjectReference::default()
        },
        reason: Some("Rejected".into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: std::env::var("HOSTNAME").ok(),
        ..Event::default()
    }
}

async fn post_event(
    client: &Client,
    key: &Key,
    resource: &ApiResource,
    stored: &Stored,
    message: &str,
) -> Result<(), kube::Error> {
    let event = rejection_event(key, resource, stored, message);
    let ns = event.metadata.namespace.clone().unwrap_or_default();
    Api::<Event>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &event)
        .await?;
    tracing::info!(resource = %key, "recorded a Rejected event");
    Ok(())
}

/// The `Accepted` condition, Gateway API / Istio style.
pub fn condition(status: &str, reason: &str, message: &str, stored: &Stored) -> serde_json::Value {
    let mut condition = json!({
        "type": "Accepted",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": Timestamp::now().to_string(),
    });
    if let Some(generation) = stored.generation {
        condition["observedGeneration"] = json!(generation);
    }
    condition
}

async fn patch_status(
    client: &Client,
    key: &Key,
    resource: &ApiResource,
    condition: serde_json::Value,
) -> Result<(), kube::Error> {
    let patch = json!({"status": {"conditions": [condition]}});
    merge_status(client, key, resource, &patch).await?;
    tracing::debug!(resource = %key, "status condition Accepted written");
    Ok(())
}

async fn merge_status(
    client: &Client,
    key: &Key,
    resource: &ApiResource,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &key.namespace, resource);
    api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}
