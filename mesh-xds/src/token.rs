//! The caller's proof of identity towards the control plane: a Kubernetes
//! ServiceAccount token (projected, audience `istio-ca`) sent as gRPC
//! metadata `authorization: Bearer <token>` on every xDS stream and every
//! certificate request, which the control plane checks with a TokenReview
//! (docs/contracts/authentication.md).
//!
//! The file is read again for every stream and request: the kubelet
//! rotates projected tokens in place (well before they expire), and a
//! cached copy would go stale while the agent runs for weeks.
use std::path::{Path, PathBuf};

use tonic::metadata::{AsciiMetadataValue, MetadataMap};

/// Metadata key carrying the token (as Istio's agents send it).
pub const AUTHORIZATION: &str = "authorization";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the ServiceAccount token file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ServiceAccount token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("the ServiceAccount token file {path} holds characters not allowed in a header")]
    NotAscii { path: PathBuf },
}

/// Where the token lives; read on every use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TokenFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Bearer <token>` from the file as it is now.
    pub fn header(&self) -> Result<AsciiMetadataValue, TokenError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| TokenError::Read {
            path: self.path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: self.path.clone(),
            });
        }
        format!("Bearer {token}")
            .parse()
            .map_err(|_| TokenError::NotAscii {
                path: self.path.clone(),
            })
    }

    /// Adds `authorization: Bearer <token>` to `metadata`.
    pub fn apply(&self, metadata: &mut MetadataMap) -> Result<(), TokenError> {
        metadata.insert(AUTHORIZATION, self.header()?);
        Ok(())
    }
}

/// Adds the token of `token`, if any, to a request.
pub fn authorize<T>(
    token: Option<&TokenFile>,
    mut request: tonic::Request<T>,
) -> Result<tonic::Request<T>, TokenError> {
    if let Some(token) = token {
        token.apply(request.metadata_mut())?;
    }
    Ok(request)
}

/// The token of an incoming request, without the `Bearer ` prefix; `None`
/// when absent or not a bearer token.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_on_every_use_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("mesh-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        let token = TokenFile::new(&path);
        let req = authorize(Some(&token), tonic::Request::new(())).unwrap();
        assert_eq!(bearer(req.metadata()), Some("first"));
        // Rotated in place by the kubelet: the next request sends the new one.
        std::fs::write(&path, "second").unwrap();
        let req = authorize(Some(&token), tonic::Request::new(())).unwrap();
        assert_eq!(bearer(req.metadata()), Some("second"));

        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(token.header(), Err(TokenError::Empty { .. })));
        std::fs::remove_file(&path).unwrap();
        let err = token.header().unwrap_err();
        assert!(err.to_string().contains("token"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);

        let req = authorize(None, tonic::Request::new(())).unwrap();
        assert_eq!(bearer(req.metadata()), None);
    }

    #[test]
    fn bearer_needs_the_scheme_and_a_token() {
        let mut m = MetadataMap::new();
        m.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&m), None);
        m.insert(AUTHORIZATION, "bearer xyz".parse().unwrap());
        assert_eq!(bearer(&m), Some("xyz"));
        m.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&m), None);
    }
}
