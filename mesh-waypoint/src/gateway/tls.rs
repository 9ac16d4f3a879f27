//! A TLS filter chain's rustls server config: the certificate and key
//! from files or from the credential directory (`kubernetes://C` →
//! `<dir>/C/tls.crt` + `tls.key`, a mounted `kubernetes.io/tls` Secret),
//! client certificates verified against the chain's CA when required
//! (`kubernetes://C-cacert` → `<dir>/C/ca.crt`). TLS 1.2 minimum; ALPN
//! `h2`, `http/1.1` unless the chain lists its own. The files are read
//! whenever the listener's resources change.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use rustls::{server::WebPkiClientVerifier, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::tls::{CertificateSource, PemSource, TlsContext};

const SDS_PREFIX: &str = "kubernetes://";
const CA_SUFFIX: &str = "-cacert";

/// `kubernetes://C` → `C`.
fn secret_name(sds: &str) -> anyhow::Result<&str> {
    sds.strip_prefix(SDS_PREFIX)
        .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != "..")
        .with_context(|| format!("SDS name {sds:?}: only {SDS_PREFIX}<secret> is supported"))
}

/// The certificate chain and key files `source` names.
pub fn certificate_files(
    source: &CertificateSource,
    dir: &Path,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    Ok(match source {
        CertificateSource::Files { chain, key } => (chain.into(), key.into()),
        CertificateSource::Sds(name) => {
            let secret = dir.join(secret_name(name)?);
            (secret.join("tls.crt"), secret.join("tls.key"))
        }
    })
}

/// The CA file `source` names.
pub fn ca_file(source: &PemSource, dir: &Path) -> anyhow::Result<PathBuf> {
    Ok(match source {
        PemSource::File(f) => f.into(),
        PemSource::Sds(name) => {
            let secret = secret_name(name)?;
            dir.join(secret.strip_suffix(CA_SUFFIX).unwrap_or(secret))
                .join("ca.crt")
        }
    })
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", path.display());
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("parsing {}", path.display()))?
        .with_context(|| format!("{}: no private key", path.display()))
}

/// The rustls server config of one chain.
pub fn server_config(ctx: &TlsContext, dir: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = certificate_files(&ctx.certificate, dir)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match (&ctx.client_ca, ctx.require_client_certificate) {
        (Some(ca), true) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&ca_file(ca, dir)?)? {
                roots.add(cert).context("client CA certificate")?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(read_certs(&chain)?, read_key(&key)?)
        .with_context(|| format!("certificate {} / key {}", chain.display(), key.display()))?;
    config.alpn_protocols = if ctx.alpn.is_empty() {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        ctx.alpn.iter().map(|p| p.as_bytes().to_vec()).collect()
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sds_names_resolve_in_the_credential_directory() {
        let dir = Path::new("/creds");
        assert_eq!(
            certificate_files(&CertificateSource::Sds("kubernetes://web".into()), dir).unwrap(),
            ("/creds/web/tls.crt".into(), "/creds/web/tls.key".into())
        );
        assert_eq!(
            ca_file(&PemSource::Sds("kubernetes://web-cacert".into()), dir).unwrap(),
            PathBuf::from("/creds/web/ca.crt")
        );
        assert_eq!(
            ca_file(&PemSource::File("/etc/ca.pem".into()), dir).unwrap(),
            PathBuf::from("/etc/ca.pem")
        );
        for bad in ["web", "kubernetes://", "kubernetes://../etc", "file://x"] {
            assert!(
                certificate_files(&CertificateSource::Sds(bad.into()), dir).is_err(),
                "{bad}"
            );
        }
    }
}
