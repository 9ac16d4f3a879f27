//! The bookinfo demo's ingress: the `istio-ingressgateway` pod runs
//! `mesh-waypoint --role gateway`, configured by the Gateway and the
//! VirtualService of `xtask/lab/demo/bookinfo/40-ingress.yaml`
//! (docs/contracts/gateway-xds.md), and `outside`, a client outside the
//! mesh, calls through it. The HTTPS server's certificate
//! (`credentialName: bookinfo-credential`) is made at start by a CA of the
//! demo's own, under the cluster's directory (removed with it).
//!
//! The host reaches the gateway as a kind cluster's user does with
//! `kubectl port-forward svc/istio-ingressgateway 8080:80`: the demo runs
//! `meshctl port-forward istio-ingressgateway 8080:80 8443:443`
//! ([`PortForward`]), so `curl http://127.0.0.1:8080/productpage` works
//! from the root namespace. A taken port fails the demo's start, naming
//! the port (the printed commands use these fixed ports).
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mesh_e2e::cluster::Cluster;

/// The gateway's pod (labels `istio: ingressgateway`, not captured).
pub const GATEWAY: &str = "istio-ingressgateway";
/// A client outside the mesh (not captured).
pub const OUTSIDE: &str = "outside";
/// The HTTPS server's host, the certificate's only SAN.
pub const HOST: &str = "bookinfo.example.com";
/// The gateway's HTTP port on the host (`meshctl port-forward`).
pub const HOST_HTTP_PORT: u16 = 8080;
/// The gateway's HTTPS port on the host.
pub const HOST_HTTPS_PORT: u16 = 8443;
/// The gateway's servers' ports in its pod.
const GATEWAY_PORTS: [u16; 2] = [80, 443];

/// The Gateway's `credentialName`.
const CREDENTIAL: &str = "bookinfo-credential";

/// The gateway's `--credential-dir`: `<credential>/tls.crt|tls.key` each.
pub fn credential_dir(c: &Cluster) -> PathBuf {
    c.dir.join("credentials")
}

/// The CA that signed the gateway's certificate (for `curl --cacert`).
pub fn ca_pem(c: &Cluster) -> PathBuf {
    c.dir.join("ca.pem")
}

/// Labels both pods so the harness does not capture them, and the
/// gateway's so the Gateway selects it.
pub fn label_pods(c: &mut Cluster) -> anyhow::Result<()> {
    c.label_pod(OUTSIDE, &[("istio.io/dataplane-mode", "none")])?;
    c.label_pod(
        GATEWAY,
        &[
            ("istio.io/dataplane-mode", "none"),
            ("istio", "ingressgateway"),
        ],
    )
}

/// Writes the CA and the certificate, then starts the gateway with them.
pub fn start_gateway(c: &mut Cluster) -> anyhow::Result<()> {
    write_credentials(&credential_dir(c), &ca_pem(c))?;
    let dir = credential_dir(c).display().to_string();
    c.start_gateway_with(GATEWAY, &["--credential-dir", &dir])?;
    Ok(())
}

/// The gateway's ports on the host's loopback: `meshctl port-forward`
/// running; stopped on drop.
pub struct PortForward {
    _forwarder: crate::demo_dashboard::Forwarder,
    /// What it printed, one line per forward
    /// (`Forwarding from 127.0.0.1:8080 -> 80`).
    pub lines: Vec<String>,
}

impl PortForward {
    /// Starts `meshctl port-forward <gateway pod> 8080:80 8443:443` (its
    /// log in `port-forward.log` in the cluster's directory) and waits
    /// for both forwards to be announced.
    pub fn start(c: &Cluster) -> anyhow::Result<PortForward> {
        let pod = c.pod(GATEWAY).netns.name.clone();
        let specs: Vec<String> = [HOST_HTTP_PORT, HOST_HTTPS_PORT]
            .iter()
            .zip(GATEWAY_PORTS)
            .map(|(local, remote)| format!("{local}:{remote}"))
            .collect();
        let mut args = vec!["port-forward", pod.as_str()];
        args.extend(specs.iter().map(String::as_str));
        let forwarder = crate::demo_dashboard::Forwarder::start(
            c,
            &args,
            "port-forward.log",
            specs.len(),
            "Forwarding from ",
        )
        .with_context(|| {
            format!(
                "exposing the ingress gateway on 127.0.0.1:{HOST_HTTP_PORT} and :{HOST_HTTPS_PORT} \
                 (free those ports if another program holds them)"
            )
        })?;
        Ok(PortForward {
            lines: forwarder.lines.clone(),
            _forwarder: forwarder,
        })
    }
}

/// A CA (to `ca`) and a certificate for [`HOST`] it signs (to
/// `<credentials>/bookinfo-credential/tls.crt|tls.key`).
fn write_credentials(credentials: &Path, ca: &Path) -> anyhow::Result<()> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mesh demo ingress CA");
    let ca_cert = params.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![HOST.to_string()])?
        .signed_by(&key, &ca_cert, &ca_key)?;
    let dir = credentials.join(CREDENTIAL);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (path, pem) in [
        (dir.join("tls.crt"), cert.pem()),
        (dir.join("tls.key"), key.serialize_pem()),
        (ca.to_path_buf(), ca_cert.pem()),
    ] {
        std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_host_and_its_ca_is_written() {
        let dir = std::env::temp_dir().join(format!("mesh-lab-ingress-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = dir.join("ca.pem");
        write_credentials(&dir.join("credentials"), &ca).unwrap();
        let crt =
            std::fs::read_to_string(dir.join("credentials/bookinfo-credential/tls.crt")).unwrap();
        let key =
            std::fs::read_to_string(dir.join("credentials/bookinfo-credential/tls.key")).unwrap();
        let ca = std::fs::read_to_string(ca).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(crt.starts_with("-----BEGIN CERTIFICATE-----"), "{crt}");
        assert!(key.contains("PRIVATE KEY"), "{key}");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        assert_ne!(crt, ca);
        let leaf = rcgen::CertificateParams::from_ca_cert_pem(&crt).unwrap();
        assert_eq!(
            leaf.subject_alt_names,
            vec![rcgen::SanType::DnsName(HOST.try_into().unwrap())]
        );
    }
}
