//! What the xDS client connects to, as whom, and how it retries.
use std::{collections::BTreeMap, time::Duration};

/// Configuration of one [`XdsClient`](super::XdsClient).
#[derive(Debug, Clone)]
pub struct XdsClientConfig {
    /// `http://host:port` (plaintext, the control plane's 15010) or
    /// `https://host:port` (with [`tls`](Self::tls), 15012).
    pub endpoint: String,
    /// `Node.id` sent on the first request of every stream (the agent
    /// sends the node-proxy form of [`NodeProxyIdentity`]; the server's
    /// proxy-status is keyed by it).
    ///
    /// [`NodeProxyIdentity`]: super::node_identity::NodeProxyIdentity
    pub node_id: String,
    /// `Node.cluster`; may be empty.
    pub node_cluster: String,
    /// `Node.metadata`, sent as a `google.protobuf.Struct` of strings.
    pub node_metadata: BTreeMap<String, String>,
    /// Wildcard subscriptions, one per type URL, e.g.
    /// [`ADDRESS_TYPE_URL`](crate::ADDRESS_TYPE_URL) and
    /// [`AUTHORIZATION_TYPE_URL`](crate::AUTHORIZATION_TYPE_URL).
    pub type_urls: Vec<String>,
    /// TLS to the control plane; `None` for plaintext.
    pub tls: Option<XdsTls>,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Limit on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Extra checks a consumer runs on every decoded resource before a
    /// response is accepted (the waypoint checks regexes, references, …):
    /// a failure NACKs the whole response and the last good config stays.
    pub validator: Option<Validator>,
    /// ServiceAccount token sent as `authorization: Bearer` on every
    /// stream, for the control plane's TokenReview; `None` sends none.
    pub token: Option<crate::token::TokenFile>,
    /// Sent as gRPC metadata `clusterid` on every stream, as Istio's node
    /// proxies do; `None` sends none.
    pub cluster_id: Option<String>,
}

/// Why a resource is refused: (field path, reason).
pub type FieldRejection = (String, String);

type CheckFn = dyn Fn(&str, &crate::XdsResource) -> Result<(), FieldRejection> + Send + Sync;

/// A consumer's resource check, called with (type URL, resource).
#[derive(Clone)]
pub struct Validator(std::sync::Arc<CheckFn>);

impl Validator {
    pub fn new(
        f: impl Fn(&str, &crate::XdsResource) -> Result<(), FieldRejection> + Send + Sync + 'static,
    ) -> Self {
        Validator(std::sync::Arc::new(f))
    }

    pub(crate) fn check(
        &self,
        type_url: &str,
        name: &str,
        r: &crate::XdsResource,
    ) -> Result<(), super::InvalidResource> {
        (self.0)(type_url, r).map_err(|(field, reason)| super::InvalidResource {
            type_url: type_url.to_string(),
            name: name.to_string(),
            field,
            reason,
        })
    }
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Validator(..)")
    }
}

impl XdsClientConfig {
    /// A plaintext config subscribing to the Address and Authorization types.
    pub fn new(endpoint: impl Into<String>, node_id: impl Into<String>) -> Self {
        XdsClientConfig {
            endpoint: endpoint.into(),
            node_id: node_id.into(),
            node_cluster: String::new(),
            node_metadata: BTreeMap::new(),
            type_urls: vec![
                crate::ADDRESS_TYPE_URL.to_string(),
                crate::AUTHORIZATION_TYPE_URL.to_string(),
            ],
            tls: None,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(5),
            validator: None,
            token: None,
            cluster_id: None,
        }
    }
}

/// TLS settings: the CA bundle the server certificate must chain to, and
/// optionally a client certificate for mutual TLS.
#[derive(Clone)]
pub struct XdsTls {
    /// PEM, one or more CA certificates.
    pub root_pem: Vec<u8>,
    /// PEM certificate chain (leaf first) and PEM private key.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify the server certificate against (and send as SNI);
    /// `None` uses the endpoint's host (a DNS name or an IP address).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for XdsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("XdsTls")
            .field("root_pem_bytes", &self.root_pem.len())
            .field("client_cert", &self.client_cert.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Exponential reconnect backoff with jitter: `initial`, doubling up to
/// `max`, each delay scaled by a random factor in `[1 - jitter, 1]`. It is
/// reset only after a healthy stream: one that applied (ACKed) a response
/// and stayed open for at least [`HEALTHY_STREAM`].
/// How long a stream that ACKed a response must stay open before its end
/// restarts the backoff from `initial`; a server that accepts and drops
/// streams, or a stream that dies right after its first push, keeps
/// doubling the delay instead of reconnecting in a tight loop.
pub const HEALTHY_STREAM: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Fraction in `[0, 1]`.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            jitter: 0.2,
        }
    }
}

/// What one stream showed about the connection, for the backoff.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StreamOutcome {
    /// How long the stream was open (zero if it never opened).
    pub lived: Duration,
    /// Responses received.
    pub responses: u64,
    /// Responses applied and ACKed.
    pub acked: u64,
}

/// The running state of a [`Backoff`].
#[derive(Debug)]
pub(crate) struct BackoffState {
    cfg: Backoff,
    next: Duration,
}

impl BackoffState {
    pub(crate) fn new(cfg: Backoff) -> Self {
        BackoffState {
            cfg,
            next: cfg.initial,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.cfg.initial;
    }

    /// The delay before reconnecting after a stream that showed `outcome`.
    pub(crate) fn after_stream(&mut self, outcome: &StreamOutcome) -> Duration {
        if outcome.acked > 0 && outcome.lived >= HEALTHY_STREAM {
            self.reset();
        }
        self.next_delay()
    }

    /// The delay before the next attempt; advances the state.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next.min(self.cfg.max);
        self.next = (base * 2).min(self.cfg.max);
        let jitter = self.cfg.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter * rand::random::<f64>();
        base.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let cfg = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: 0.0,
        };
        let mut b = BackoffState::new(cfg);
        let got: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    /// Only a stream that applied a response and stayed up resets the
    /// backoff: a server that answers and then drops every stream (or
    /// sends only what the client rejects) is retried ever more slowly.
    #[test]
    fn only_a_healthy_stream_resets_the_backoff() {
        let cfg = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: 0.0,
        };
        let mut b = BackoffState::new(cfg);
        let flapping = StreamOutcome {
            lived: Duration::from_millis(50),
            responses: 1,
            acked: 1,
        };
        let delays: Vec<u128> = (0..4)
            .map(|_| b.after_stream(&flapping).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        let rejected = StreamOutcome {
            lived: HEALTHY_STREAM * 2,
            responses: 5,
            acked: 0,
        };
        assert_eq!(b.after_stream(&rejected), Duration::from_millis(1600));
        let healthy = StreamOutcome {
            lived: HEALTHY_STREAM,
            responses: 1,
            acked: 1,
        };
        assert_eq!(b.after_stream(&healthy), Duration::from_millis(100));
    }

    #[test]
    fn backoff_jitter_stays_in_range() {
        let mut b = BackoffState::new(Backoff::default());
        for _ in 0..100 {
            b.reset();
            let d = b.next_delay();
            assert!(
                d <= Duration::from_millis(100) && d >= Duration::from_millis(80),
                "{d:?}"
            );
        }
    }
}
