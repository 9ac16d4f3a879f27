//! The client identity of a TLS chain that verified a client certificate
//! (Istio's `MUTUAL`): the leaf's `spiffe://` URI SAN, as Envoy's
//! `source.principal` (the peer certificate's URI SAN). It becomes the
//! downstream principal RBAC `principals` match, as an HBONE peer's
//! identity does. A certificate without exactly one SPIFFE URI SAN gives
//! no principal: policies that require one deny.
use mesh_hbone::SPIFFE_SCHEME;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The principal of the verified client chain `certs` (leaf first).
pub fn client_principal(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let sans = mesh_hbone::uri_sans(&cert).ok()?;
    let mut uris = sans
        .into_iter()
        .filter(|uri| uri.starts_with(SPIFFE_SCHEME));
    match (uris.next(), uris.next()) {
        (Some(uri), None) if uri.len() > SPIFFE_SCHEME.len() => Some(uri.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: Vec<rcgen::SanType>) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().clone()
    }

    fn uri(u: &str) -> rcgen::SanType {
        rcgen::SanType::URI(rcgen::Ia5String::try_from(u).unwrap())
    }

    #[test]
    fn the_spiffe_uri_san_is_the_principal() {
        let id = "spiffe://cluster.local/ns/outside/sa/client";
        let c = cert(vec![
            rcgen::SanType::DnsName("client.example.com".try_into().unwrap()),
            uri("https://example.com/x"),
            uri(id),
        ]);
        assert_eq!(client_principal(Some(&[c])).as_deref(), Some(id));
    }

    #[test]
    fn no_or_several_spiffe_sans_give_no_principal() {
        let dns = cert(vec![rcgen::SanType::DnsName(
            "client.example.com".try_into().unwrap(),
        )]);
        assert_eq!(client_principal(Some(&[dns])), None);
        let two = cert(vec![
            uri("spiffe://a/ns/x/sa/y"),
            uri("spiffe://b/ns/x/sa/y"),
        ]);
        assert_eq!(client_principal(Some(&[two])), None);
        assert_eq!(client_principal(Some(&[])), None);
        assert_eq!(client_principal(None), None);
    }
}
