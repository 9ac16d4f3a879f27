//! The client task: connect, run one Delta ADS stream, reconnect.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

use super::{
    config::{BackoffState, StreamOutcome},
    snapshot::{CachedResource, XdsSnapshot},
    validate::decode_resource,
    XdsClientConfig,
};
use crate::{
    proto::{
        envoy_core::Node,
        envoy_discovery::{
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
            DeltaDiscoveryRequest, DeltaDiscoveryResponse,
        },
        google_rpc,
    },
    transport::TlsConnector,
};

/// `google.rpc.Code::InvalidArgument`, the code of our NACKs.
const INVALID_ARGUMENT: i32 = 3;
/// At most this many rejected resources are named in one NACK message.
const MAX_NAMED_ERRORS: usize = 5;

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("invalid endpoint {endpoint:?}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connecting to {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("stream failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("request channel closed")]
    RequestsClosed,
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    #[error(transparent)]
    ClusterId(#[from] super::node_identity::InvalidClusterId),
}

/// `error: cause: cause…`, for logs and `last_error`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

fn publish(tx: &watch::Sender<Arc<XdsSnapshot>>, f: impl FnOnce(&mut XdsSnapshot)) {
    tx.send_modify(|snap| f(Arc::make_mut(snap)));
}

pub(super) async fn run(
    cfg: XdsClientConfig,
    tx: watch::Sender<Arc<XdsSnapshot>>,
    mut stop: oneshot::Receiver<()>,
) {
    let tls = match cfg.tls.as_ref().map(TlsConnector::new).transpose() {
        Ok(t) => t,
        Err(e) => {
            // A configuration error: retrying cannot fix it.
            let msg = format!("xDS TLS settings: {}", chain(&e));
            tracing::error!(endpoint = %cfg.endpoint, "{msg}");
            publish(&tx, |s| s.last_error = Some(msg));
            return;
        }
    };
    let mut backoff = BackoffState::new(cfg.backoff);
    loop {
        let mut outcome = StreamOutcome::default();
        let result = tokio::select! {
            r = run_stream(&cfg, tls.as_ref(), &tx, &mut outcome) => r,
            _ = &mut stop => break,
        };
        let msg = match result {
            Ok(()) => "stream closed by the server".to_string(),
            Err(e) => chain(&e),
        };
        let delay = backoff.after_stream(&outcome);
        warn!(
            endpoint = %cfg.endpoint,
            retry_in = ?delay,
            lived = ?outcome.lived,
            responses = outcome.responses,
            acked = outcome.acked,
            "xDS: {msg}"
        );
        publish(&tx, |s| {
            s.connected = false;
            s.last_error = Some(msg);
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop => break,
        }
    }
    publish(&tx, |s| s.connected = false);
    debug!(endpoint = %cfg.endpoint, "xDS client stopped");
}

fn node(cfg: &XdsClientConfig) -> Node {
    let fields = cfg
        .node_metadata
        .iter()
        .map(|(k, v)| {
            let value = crate::proto::wkt::Value {
                kind: Some(crate::proto::wkt::value::Kind::StringValue(v.clone())),
            };
            (k.clone(), value)
        })
        .collect();
    Node {
        id: cfg.node_id.clone(),
        cluster: cfg.node_cluster.clone(),
        metadata: Some(crate::proto::wkt::Struct { fields }),
        user_agent_name: concat!("mesh-xds/", env!("CARGO_PKG_VERSION")).to_string(),
        ..Node::default()
    }
}

async fn run_stream(
    cfg: &XdsClientConfig,
    tls: Option<&TlsConnector>,
    tx: &watch::Sender<Arc<XdsSnapshot>>,
    outcome: &mut StreamOutcome,
) -> Result<(), StreamError> {
    let endpoint = Endpoint::from_shared(cfg.endpoint.clone())
        .map_err(|source| StreamError::Endpoint {
            endpoint: cfg.endpoint.clone(),
            source,
        })?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let connect_err = |source| StreamError::Connect {
        endpoint: cfg.endpoint.clone(),
        source,
    };
    let channel = match tls {
        Some(c) => endpoint
            .connect_with_connector(c.clone())
            .await
            .map_err(connect_err)?,
        None => endpoint.connect().await.map_err(connect_err)?,
    };
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);

    // One subscription per type; on a reconnect each carries what we hold,
    // so the server sends only what changed meanwhile.
    let (req_tx, req_rx) = mpsc::channel::<DeltaDiscoveryRequest>(64);
    let held = tx.borrow().clone();
    for (i, type_url) in cfg.type_urls.iter().enumerate() {
        let initial: std::collections::HashMap<String, String> =
            held.versions(type_url).into_iter().collect();
        debug!(%type_url, resources = initial.len(), "subscribing (wildcard)");
        let req = DeltaDiscoveryRequest {
            node: (i == 0).then(|| node(cfg)),
            type_url: type_url.clone(),
            initial_resource_versions: initial,
            ..Default::default()
        };
        req_tx
            .send(req)
            .await
            .map_err(|_| StreamError::RequestsClosed)?;
    }
    let mut request = crate::token::authorize(
        cfg.token.as_ref(),
        tonic::Request::new(ReceiverStream::new(req_rx)),
    )?;
    super::node_identity::insert_cluster_id(request.metadata_mut(), cfg.cluster_id.as_deref())?;
    let mut responses = client
        .delta_aggregated_resources(request)
        .await?
        .into_inner();
    info!(endpoint = %cfg.endpoint, node = %cfg.node_id, "xDS stream connected");
    publish(tx, |s| s.connected = true);
    let opened = tokio::time::Instant::now();

    while let Some(resp) = next_response(&mut responses, outcome, opened).await? {
        let reply = handle_response(tx, resp, cfg.validator.as_ref());
        outcome.responses += 1;
        outcome.acked += u64::from(reply.error_detail.is_none());
        req_tx
            .send(reply)
            .await
            .map_err(|_| StreamError::RequestsClosed)?;
    }
    Ok(())
}

/// The next response; `outcome.lived` follows the stream's age, so it is
/// right however the stream ends.
async fn next_response(
    responses: &mut tonic::Streaming<DeltaDiscoveryResponse>,
    outcome: &mut StreamOutcome,
    opened: tokio::time::Instant,
) -> Result<Option<DeltaDiscoveryResponse>, tonic::Status> {
    let next = responses.message().await;
    outcome.lived = opened.elapsed();
    next
}

/// Applies one response atomically (or not at all) and returns the ACK or
/// NACK to send. The snapshot is published before the reply is sent, so a
/// server that sees the ACK knows the client's snapshot holds the data.
fn handle_response(
    tx: &watch::Sender<Arc<XdsSnapshot>>,
    resp: DeltaDiscoveryResponse,
    validator: Option<&super::config::Validator>,
) -> DeltaDiscoveryRequest {
    let type_url = resp.type_url.clone();
    let mut decoded = BTreeMap::new();
    let mut errors = Vec::new();
    if type_url.is_empty() {
        errors.push("response has no type_url".to_string());
    }
    for res in &resp.resources {
        let checked = decode_resource(&type_url, res).and_then(|r| match validator {
            Some(v) => v.check(&type_url, &res.name, &r).map(|()| r),
            None => Ok(r),
        });
        match checked {
            Ok(r) => {
                decoded.insert(
                    res.name.clone(),
                    CachedResource {
                        version: res.version.clone(),
                        resource: Arc::new(r),
                    },
                );
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        let mut message = errors
            .iter()
            .take(MAX_NAMED_ERRORS)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if errors.len() > MAX_NAMED_ERRORS {
            message.push_str(&format!(" (and {} more)", errors.len() - MAX_NAMED_ERRORS));
        }
        warn!(%type_url, nonce = %resp.nonce, "NACK: {message}");
        publish(tx, |s| {
            s.last_error = Some(format!("rejected {type_url}: {message}"))
        });
        return DeltaDiscoveryRequest {
            type_url,
            response_nonce: resp.nonce,
            error_detail: Some(google_rpc::Status {
                code: INVALID_ARGUMENT,
                message,
                details: vec![],
            }),
            ..Default::default()
        };
    }
    let (added, removed) = (decoded.len(), resp.removed_resources.len());
    publish(tx, |s| {
        let mut cache = s.type_cache(&type_url);
        for name in &resp.removed_resources {
            cache.remove(name);
        }
        cache.extend(decoded);
        s.set_type(&type_url, cache);
        s.generation += 1;
        s.synced.insert(type_url.clone());
        s.acked_nonce.insert(type_url.clone(), resp.nonce.clone());
        s.last_error = None;
    });
    debug!(%type_url, nonce = %resp.nonce, added, removed, "ACK");
    DeltaDiscoveryRequest {
        type_url,
        response_nonce: resp.nonce,
        ..Default::default()
    }
}
