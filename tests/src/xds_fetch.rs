//! One-shot Delta ADS fetch: opens a stream to a control plane as a given
//! node (optionally with `authorization: Bearer <token>` metadata),
//! subscribes to every given type (wildcard), ACKs, and returns the encoded
//! resources of each type's first response. Tests compare these bytes
//! between control planes, or poll with repeated fetches.
use std::{collections::BTreeMap, time::Duration};

use mesh_xds::proto::{
    envoy_core::Node,
    envoy_discovery::{
        aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
        DeltaDiscoveryRequest,
    },
    wkt,
};

/// Per type URL, per resource name, the resource's encoded bytes
/// (`Any.value`; versions are left out: they differ between servers).
pub type Fetched = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to {endpoint}: {error}")]
    Connect {
        endpoint: String,
        error: tonic::transport::Error,
    },
    #[error("the stream failed: {0}")]
    Status(#[from] tonic::Status),
    #[error("no response within {limit:?} for {missing:?}")]
    Timeout {
        limit: Duration,
        missing: Vec<String>,
    },
    #[error("the server ended the stream before answering {missing:?}")]
    Ended { missing: Vec<String> },
}

/// Who the stream says it is.
#[derive(Debug, Clone, Default)]
pub struct AsNode {
    pub id: String,
    /// String-valued `Node.metadata` (a waypoint's `NAMESPACE` + `WAYPOINT`).
    pub metadata: BTreeMap<String, String>,
    pub token: Option<String>,
}

impl AsNode {
    pub fn agent(id: &str) -> Self {
        AsNode {
            id: id.into(),
            ..Default::default()
        }
    }

    pub fn waypoint(namespace: &str, name: &str) -> Self {
        AsNode {
            id: format!("waypoint~10.0.0.1~{name}-0.{namespace}~{namespace}.svc.cluster.local"),
            metadata: BTreeMap::from([
                ("NAMESPACE".to_string(), namespace.to_string()),
                ("WAYPOINT".to_string(), name.to_string()),
            ]),
            token: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    fn node(&self) -> Node {
        let fields = self
            .metadata
            .iter()
            .map(|(k, v)| {
                let value = wkt::Value {
                    kind: Some(wkt::value::Kind::StringValue(v.clone())),
                };
                (k.clone(), value)
            })
            .collect();
        Node {
            id: self.id.clone(),
            metadata: Some(wkt::Struct { fields }),
            ..Node::default()
        }
    }
}

/// Fetches `types` from `endpoint` (`http://host:port`) as `node`, within
/// `limit`.
pub async fn fetch(
    endpoint: &str,
    node: &AsNode,
    types: &[&str],
    limit: Duration,
) -> Result<Fetched, FetchError> {
    match tokio::time::timeout(limit, fetch_unbounded(endpoint, node, types)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout {
            limit,
            missing: types.iter().map(ToString::to_string).collect(),
        }),
    }
}

async fn fetch_unbounded(
    endpoint: &str,
    node: &AsNode,
    types: &[&str],
) -> Result<Fetched, FetchError> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|error| FetchError::Connect {
            endpoint: endpoint.into(),
            error,
        })?
        .connect()
        .await
        .map_err(|error| FetchError::Connect {
            endpoint: endpoint.into(),
            error,
        })?;
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(types.len() + 16);
    for (i, type_url) in types.iter().enumerate() {
        let request = DeltaDiscoveryRequest {
            node: (i == 0).then(|| node.node()),
            type_url: type_url.to_string(),
            ..Default::default()
        };
        tx.try_send(request).expect("channel sized for every type");
    }
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Some(token) = &node.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::invalid_argument("token is not ASCII metadata"))?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut stream = client
        .delta_aggregated_resources(request)
        .await?
        .into_inner();
    let mut fetched = Fetched::new();
    // Bounded by the caller's timeout and by one response per type.
    while fetched.len() < types.len() {
        let Some(response) = stream.message().await? else {
            let missing = types
                .iter()
                .filter(|t| !fetched.contains_key(**t))
                .map(ToString::to_string)
                .collect();
            return Err(FetchError::Ended { missing });
        };
        let entry = fetched.entry(response.type_url.clone()).or_default();
        for resource in response.resources {
            let bytes = resource.resource.map(|any| any.value).unwrap_or_default();
            entry.insert(resource.name, bytes);
        }
        let _ = tx
            .send(DeltaDiscoveryRequest {
                type_url: response.type_url,
                response_nonce: response.nonce,
                ..Default::default()
            })
            .await;
    }
    Ok(fetched)
}
