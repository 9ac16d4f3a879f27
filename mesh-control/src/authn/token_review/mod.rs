//! [`TokenReviewer`]: authenticates a bearer token by posting an
//! `authentication.k8s.io/v1` TokenReview (with the expected audience) to
//! the API server. Results — accepted or refused, not transport failures —
//! are cached by the token's SHA-256 for at most [`CACHE_TTL`], so a stream
//! reconnect storm does not become a TokenReview storm, while a revoked
//! token stops working within a minute. Concurrent reviews of one token
//! share one call, at most [`MAX_CONCURRENT_REVIEWS`] calls run at once,
//! and a full cache drops its oldest entries.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OnceCell, Semaphore};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::{
    api::{Api, PostParams},
    Client,
};
use sha2::{Digest as _, Sha256};

use super::{AuthError, Authenticator, Caller};

/// How long a review result is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Entries kept at most; the oldest are dropped first.
const CACHE_MAX: usize = 10_000;
/// TokenReviews in flight at most; further callers wait for a slot, so a
/// flood of new tokens is paced by the API server instead of piling on it.
pub const MAX_CONCURRENT_REVIEWS: usize = 8;
/// The token extras Kubernetes sets for pod-bound tokens.
const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

mod cache;

type Review = Result<Caller, AuthError>;
/// One review in flight, shared by every caller of the same token.
type InFlight = Arc<OnceCell<Review>>;

/// TokenReview-backed [`Authenticator`].
pub struct TokenReviewer {
    client: Client,
    audience: String,
    cache: Mutex<cache::ReviewCache<Review>>,
    in_flight: Mutex<HashMap<[u8; 32], InFlight>>,
    slots: Semaphore,
}

impl TokenReviewer {
    /// Reviews tokens for `audience` (`--token-audience`) with `client`.
    pub fn new(client: Client, audience: impl Into<String>) -> Self {
        TokenReviewer {
            client,
            audience: audience.into(),
            cache: Mutex::new(cache::ReviewCache::new(CACHE_TTL, CACHE_MAX)),
            in_flight: Mutex::new(HashMap::new()),
            slots: Semaphore::new(MAX_CONCURRENT_REVIEWS),
        }
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Review> {
        self.cache.lock().expect("token cache poisoned").get(hash)
    }

    fn remember(&self, hash: [u8; 32], result: &Review) {
        self.cache
            .lock()
            .expect("token cache poisoned")
            .insert(hash, result.clone());
    }

    /// Reviews `token` once for all its concurrent callers; a result other
    /// than a transport failure is cached before the review is released.
    async fn review_shared(&self, hash: [u8; 32], token: &str) -> Review {
        let cell = self
            .in_flight
            .lock()
            .expect("token reviews poisoned")
            .entry(hash)
            .or_default()
            .clone();
        let result = cell
            .get_or_init(|| async {
                // A caller that waited for the cell may find the result
                // already cached by a review that just finished.
                if let Some(result) = self.cached(&hash) {
                    return result;
                }
                let _slot = self.slots.acquire().await.expect("never closed");
                let result = self.review(token).await;
                if !matches!(result, Err(AuthError::Unavailable(_))) {
                    self.remember(hash, &result);
                }
                result
            })
            .await
            .clone();
        let mut in_flight = self.in_flight.lock().expect("token reviews poisoned");
        if in_flight.get(&hash).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&hash);
        }
        result
    }

    async fn review(&self, token: &str) -> Review {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(format!("TokenReview: {e}")))?;
        caller_of(answer, &self.audience)
    }
}

/// The caller a TokenReview answer proves.
pub fn caller_of(review: TokenReview, audience: &str) -> Result<Caller, AuthError> {
    let status = review.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        let reason = status
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "not authenticated".into());
        return Err(AuthError::Rejected(reason));
    }
    // An API server that reviewed for other audiences says which; one
    // that does not list them accepted ours (it was in the request).
    if let Some(audiences) = status.audiences.filter(|a| !a.is_empty()) {
        if !audiences.iter().any(|a| a == audience) {
            return Err(AuthError::Rejected(format!(
                "the token is for {audiences:?}, not for audience {audience:?}"
            )));
        }
    }
    let user = status.user.unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let Some((namespace, service_account)) = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
    else {
        return Err(AuthError::NotServiceAccount(username));
    };
    let extra = user.extra.unwrap_or_default();
    let first = |key: &str| {
        extra
            .get(key)
            .and_then(|values| values.first())
            .filter(|v| !v.is_empty())
            .cloned()
    };
    Ok(Caller {
        namespace: namespace.to_string(),
        service_account: service_account.to_string(),
        pod_name: first(POD_NAME_EXTRA),
        node_name: first(NODE_NAME_EXTRA),
    })
}

#[tonic::async_trait]
impl Authenticator for TokenReviewer {
    async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(result) = self.cached(&hash) {
            return result;
        }
        self.review_shared(hash, token).await
    }
}

#[cfg(test)]
mod tests;
