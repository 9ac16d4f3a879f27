//! What the in-process xDS tests of waypoints and gateways share: a bound
//! on every wait, a CA signer that signs nothing, and the course notes'
//! seed files.
use std::{future::Future, time::Duration};

use mesh_control::serve::CsrSigner;

const LIMIT: Duration = Duration::from_secs(10);

/// `f`, or a panic naming `what` after 10 s.
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// These tests ask for no certificate.
pub struct NoSigner;

impl CsrSigner for NoSigner {
    fn sign(&self, _csr: &str, _ttl: Duration) -> Result<Vec<String>, String> {
        Err("not in this test".into())
    }
}

/// `tests/data/seeds/<name>.yaml`, as extracted from the course notes.
pub fn seed(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/data/seeds/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}
