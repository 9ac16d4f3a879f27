//! The `secrets` section of `/config_dump`: every certificate the proxy
//! presents or trusts, as Envoy's SecretsConfigDump lists them and
//! `meshctl proxy-config secret` shows them. Metadata only (subject,
//! issuer, serial, validity, SANs), never key material:
//!
//! - `default` (`type: "workload"`): the proxy's own SPIFFE certificate
//!   from the CA (what it shows on HBONE), leaf first in `chain`;
//! - `ROOTCA` (`type: "root"`): each certificate of the mesh trust bundle;
//! - a gateway's TLS server certificates (`type: "gateway"`), named by the
//!   chain's `credentialName` (`kubernetes://<secret>`) or certificate file,
//!   and the CAs it verifies client certificates with (`type:
//!   "gateway_ca"`), read from the files as the listeners read them; a file
//!   that cannot be read or parsed is listed with its `error`.
//!
//! `valid` says whether now lies within the certificate's validity.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use mesh_hbone::CertStore;
use serde_json::{json, Value};
use x509_parser::{
    extensions::GeneralName,
    prelude::{FromDer, X509Certificate},
};

use crate::{
    config::tls::{CertificateSource, PemSource, TlsContext},
    gateway::{tls, ListenerManager},
};

/// The name Envoy and Istio give the workload certificate secret.
pub const WORKLOAD_SECRET: &str = "default";
/// The name Envoy and Istio give the trust root secret.
pub const ROOT_SECRET: &str = "ROOTCA";

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Subject, issuer, serial (lowercase hex), validity and SANs of one DER
/// certificate, and whether `now` is within its validity.
pub fn certificate(der: &[u8], now: i64) -> Result<Value, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not X.509: {e}"))?;
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let mut dns = vec![];
    let mut uris = vec![];
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::URI(u) => uris.push(u.to_string()),
                _ => {}
            }
        }
    }
    Ok(json!({
        "subject": cert.subject().to_string(),
        "issuer": cert.issuer().to_string(),
        "serial": cert.serial.to_str_radix(16),
        "not_before_unix": not_before,
        "not_after_unix": not_after,
        "valid": (not_before..=not_after).contains(&now),
        "dns_names": dns,
        "uris": uris,
    }))
}

/// The chain's certificates in order, each as [`certificate`] shows it
/// (an unparsable one as its `error`).
fn chain(ders: &[impl AsRef<[u8]>], now: i64) -> Vec<Value> {
    ders.iter()
        .map(|d| certificate(d.as_ref(), now).unwrap_or_else(|error| json!({"error": error})))
        .collect()
}

/// The workload certificates and trust roots of `store`.
fn mesh(store: &CertStore, now: i64) -> Vec<Value> {
    let mut out = vec![];
    let mut identities = store.identities();
    identities.sort_by_key(|i| i.to_string());
    for identity in identities {
        let Some(cert) = store.get(&identity) else {
            continue; // removed since listed
        };
        let (not_before, not_after) = (unix(cert.not_before()), unix(cert.not_after()));
        out.push(json!({
            "name": WORKLOAD_SECRET,
            "type": "workload",
            "identity": identity.to_string(),
            "serial": cert.serial(),
            "not_before_unix": not_before,
            "not_after_unix": not_after,
            "valid": (not_before..=not_after).contains(&now),
            "last_updated_unix": unix(cert.received()),
            "chain": chain(cert.chain(), now),
        }));
    }
    for root in chain(store.trust_bundle().certs(), now) {
        let mut entry = json!({"name": ROOT_SECRET, "type": "root"});
        if let (Some(e), Some(fields)) = (entry.as_object_mut(), root.as_object()) {
            e.extend(fields.clone());
        }
        out.push(entry);
    }
    out
}

/// Where a gateway secret is used.
#[derive(Default)]
struct Uses {
    file: String,
    listeners: BTreeSet<String>,
    server_names: BTreeSet<String>,
}

/// A certificate file as a secret: its first certificate's fields, the
/// whole chain, where it is used; `error` when it cannot be read.
fn file_secret(name: &str, kind: &str, uses: &Uses, now: i64) -> Value {
    let mut entry = json!({
        "name": name,
        "type": kind,
        "file": uses.file,
        "listeners": uses.listeners,
        "server_names": uses.server_names,
    });
    let read = std::fs::read(&uses.file)
        .map_err(|e| format!("reading {}: {e}", uses.file))
        .and_then(|pem| {
            rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("parsing {}: {e}", uses.file))
        });
    match read {
        Ok(ders) if ders.is_empty() => {
            entry["error"] = json!(format!("{}: no certificate", uses.file))
        }
        Ok(ders) => {
            let certs = chain(&ders, now);
            if let (Some(e), Some(first)) = (entry.as_object_mut(), certs[0].as_object()) {
                e.extend(first.clone());
            }
            entry["chain"] = json!(certs);
        }
        Err(error) => entry["error"] = json!(error),
    }
    entry
}

/// The TLS server certificates and client CAs of a gateway's bound
/// listeners.
fn gateway(listeners: &ListenerManager, now: i64) -> Vec<Value> {
    let (contexts, dir) = listeners.tls_contexts();
    tls_secrets(&contexts, &dir, now)
}

/// The secrets of TLS `contexts` (`(listener, SNI names, context)`), one
/// entry per secret however many chains use it; `kubernetes://` names
/// resolve in `dir`.
fn tls_secrets(contexts: &[(String, Vec<String>, TlsContext)], dir: &Path, now: i64) -> Vec<Value> {
    let mut secrets: BTreeMap<(&str, String), Uses> = BTreeMap::new();
    let mut errors = vec![];
    for (listener, server_names, ctx) in contexts {
        let mut note =
            |kind: &'static str, name: String, file: anyhow::Result<std::path::PathBuf>| match file
            {
                Ok(file) => {
                    let uses = secrets.entry((kind, name)).or_default();
                    uses.file = file.display().to_string();
                    uses.listeners.insert(listener.clone());
                    uses.server_names.extend(server_names.iter().cloned());
                }
                Err(e) => errors.push(json!({
                    "name": name, "type": kind, "listeners": [listener], "error": format!("{e:#}"),
                })),
            };
        let (name, file) = match &ctx.certificate {
            CertificateSource::Sds(sds) => (
                sds.clone(),
                tls::certificate_files(&ctx.certificate, dir).map(|f| f.0),
            ),
            CertificateSource::Files { chain, .. } => {
                (chain.clone(), Ok(Path::new(chain).to_path_buf()))
            }
        };
        note("gateway", name, file);
        if let Some(ca) = &ctx.client_ca {
            let name = match ca {
                PemSource::Sds(s) | PemSource::File(s) => s.clone(),
            };
            note("gateway_ca", name, tls::ca_file(ca, dir));
        }
    }
    let mut out: Vec<Value> = secrets
        .iter()
        .map(|((kind, name), uses)| file_secret(name, kind, uses, now))
        .collect();
    out.extend(errors);
    out
}

/// The `secrets` of `/config_dump` at time `now`: the mesh certificates of
/// `store` (absent without a CA) and the TLS certificates of a gateway's
/// `listeners`.
pub fn dump(
    store: Option<&CertStore>,
    listeners: Option<&ListenerManager>,
    now: SystemTime,
) -> Value {
    let now = unix(now);
    let mut out = store.map(|s| mesh(s, now)).unwrap_or_default();
    if let Some(l) = listeners {
        out.extend(gateway(l, now));
    }
    json!(out)
}

#[cfg(test)]
mod tests {
    use mesh_hbone::test_ca::TestCa;

    use super::*;

    #[test]
    fn lists_the_workload_chain_and_the_root_without_keys() {
        let ca = TestCa::new("mesh test root");
        let id: mesh_hbone::Identity = "spiffe://cluster.local/ns/default/sa/waypoint"
            .parse()
            .unwrap();
        let store = ca.store(&[&id]);
        let serial = store.get(&id).unwrap().serial().to_string();
        let v = dump(Some(&store), None, SystemTime::now());
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), 2, "{v}");
        let w = &list[0];
        assert_eq!(
            (&w["name"], &w["type"], &w["identity"], &w["serial"]),
            (
                &json!("default"),
                &json!("workload"),
                &json!(id.to_string()),
                &json!(serial)
            ),
            "{w}"
        );
        assert_eq!(w["valid"], true);
        assert_eq!(w["chain"][0]["uris"][0], json!(id.to_string()));
        let root = &list[1];
        assert_eq!(
            (&root["name"], &root["type"]),
            (&json!("ROOTCA"), &json!("root"))
        );
        // The leaf names the root as its issuer.
        assert_eq!(root["subject"], w["chain"][0]["issuer"], "{v}");
        assert!(!v.to_string().contains("PRIVATE"), "{v}");
        // Outside its validity it is listed as not valid.
        let later = SystemTime::now() + std::time::Duration::from_secs(10 * 365 * 24 * 3600);
        assert_eq!(dump(Some(&store), None, later)[0]["valid"], false);
    }

    #[test]
    fn lists_gateway_credentials_once_with_where_they_are_used() {
        let dir =
            std::env::temp_dir().join(format!("mesh-waypoint-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("web")).unwrap();
        let ca = TestCa::new("gateway test root");
        let (chain, _key) = ca.issue_pem(
            &["spiffe://example.org/web".into()],
            0x2a,
            std::time::Duration::from_secs(3600),
        );
        std::fs::write(dir.join("web/tls.crt"), chain).unwrap();
        std::fs::write(dir.join("web/ca.crt"), ca.pem()).unwrap();
        let ctx = |name: &str, client_ca: Option<PemSource>| TlsContext {
            certificate: CertificateSource::Sds(name.into()),
            require_client_certificate: client_ca.is_some(),
            client_ca,
            alpn: vec![],
        };
        let contexts = vec![
            (
                "https".to_string(),
                vec!["a.example".to_string()],
                ctx(
                    "kubernetes://web",
                    Some(PemSource::Sds("kubernetes://web-cacert".into())),
                ),
            ),
            (
                "https".into(),
                vec!["b.example".into()],
                ctx("kubernetes://web", None),
            ),
            ("other".into(), vec![], ctx("kubernetes://gone", None)),
        ];
        let now = unix(SystemTime::now());
        let v = json!(tls_secrets(&contexts, &dir, now));
        let _ = std::fs::remove_dir_all(&dir);
        let by_name = |name: &str, kind: &str| {
            v.as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name && e["type"] == kind)
                .cloned()
                .unwrap_or_else(|| panic!("no {kind} {name} in {v}"))
        };
        let web = by_name("kubernetes://web", "gateway");
        assert_eq!(web["serial"], "2a", "{web}");
        assert_eq!(web["valid"], true, "{web}");
        assert_eq!(web["listeners"], json!(["https"]), "{web}");
        assert_eq!(
            web["server_names"],
            json!(["a.example", "b.example"]),
            "{web}"
        );
        let ca_entry = by_name("kubernetes://web-cacert", "gateway_ca");
        assert_eq!(ca_entry["issuer"], web["issuer"], "{v}");
        assert_eq!(
            ca_entry["subject"], ca_entry["issuer"],
            "self-signed root: {v}"
        );
        let gone = by_name("kubernetes://gone", "gateway");
        assert!(
            gone["error"].as_str().unwrap().contains("gone/tls.crt"),
            "{gone}"
        );
        assert_eq!(v.as_array().unwrap().len(), 3, "{v}");
    }
}
