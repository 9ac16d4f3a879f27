//! `networking.istio.io` `Gateway` (v1, v1beta1, v1alpha3): an ingress
//! gateway's selector and servers (docs/contracts/gateway-xds.md). Every
//! problem names its field: an unknown protocol or TLS mode, an HTTPS
//! or TLS server without `tls`, a SIMPLE / MUTUAL server without its certificate
//! (a `serverCertificate` + `privateKey` pair or a `credentialName`).
use serde_yaml::Value;

use super::fields::{self, lookup, Reporter};
use crate::model::ingress::{IngressGateway, Protocol, Server, ServerTls, TlsMode};

/// `networking.istio.io` versions whose Gateway the mesh reads.
const VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];

/// Reads the Gateway in `value`; `None` when it has a problem (reported).
pub(crate) fn ingress_gateway(
    rep: &mut Reporter<'_>,
    value: &Value,
    version: &str,
    name: &str,
    namespace: &str,
) -> Option<IngressGateway> {
    let before = rep.count();
    if !VERSIONS.contains(&version) {
        rep.error(
            "apiVersion",
            format!("networking.istio.io/{version} is not a Gateway version the mesh reads (use v1, v1beta1 or v1alpha3)"),
        );
        return None;
    }
    let selector = fields::string_map(rep, value, "spec.selector");
    let mut servers = vec![];
    for (i, server) in fields::seq(rep, value, "spec.servers").iter().enumerate() {
        servers.extend(read_server(rep, server, &format!("spec.servers[{i}]")));
    }
    (rep.count() == before).then(|| IngressGateway {
        name: name.to_string(),
        namespace: namespace.to_string(),
        file: rep.file.to_string(),
        selector,
        pods_namespace: None,
        servers,
    })
}

/// A string field of `value` at `key`; `at` is `value`'s own path.
fn string(rep: &mut Reporter<'_>, value: &Value, key: &str, at: &str) -> Option<String> {
    match lookup(value, key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        other => {
            rep.error(
                format!("{at}.{key}"),
                format!("expected a non-empty string, found {}", fields::show(other)),
            );
            None
        }
    }
}

fn read_server(rep: &mut Reporter<'_>, server: &Value, at: &str) -> Option<Server> {
    if !server.is_mapping() {
        rep.error(
            at,
            format!("expected a mapping, found {}", fields::type_name(server)),
        );
        return None;
    }
    let before = rep.count();
    let port = match lookup(server, "port.number") {
        Some(n) => fields::port(rep, &format!("{at}.port.number"), n),
        None => {
            rep.error(format!("{at}.port.number"), "required field is missing");
            None
        }
    };
    let port_name = string(rep, server, "port.name", at);
    if port_name.is_none() && lookup(server, "port.name").is_none() {
        rep.error(format!("{at}.port.name"), "required field is missing");
    }
    let protocol = match string(rep, server, "port.protocol", at) {
        Some(p) => match Protocol::parse(&p) {
            Some(p) => Some(p),
            None => {
                rep.error(
                    format!("{at}.port.protocol"),
                    format!("unknown protocol {p:?} (one of {})", Protocol::NAMES),
                );
                None
            }
        },
        None => {
            if lookup(server, "port.protocol").is_none() {
                rep.error(format!("{at}.port.protocol"), "required field is missing");
            }
            None
        }
    };
    let hosts = match lookup(server, "hosts") {
        Some(v) => fields::strings(rep, v, &format!("{at}.hosts")),
        None => vec![],
    };
    if hosts.is_empty() && lookup(server, "hosts").is_none() {
        rep.error(format!("{at}.hosts"), "required field is missing");
    }
    let tls = match lookup(server, "tls") {
        None => None,
        Some(t) if t.is_mapping() => read_tls(rep, t, &format!("{at}.tls")),
        Some(other) => {
            rep.error(
                format!("{at}.tls"),
                format!("expected a mapping, found {}", fields::type_name(other)),
            );
            None
        }
    };
    if rep.count() != before {
        return None;
    }
    let protocol = protocol?;
    let needs_tls = matches!(protocol, Protocol::Https | Protocol::Tls);
    if needs_tls && tls.as_ref().and_then(|t| t.mode).is_none() {
        rep.error(
            format!("{at}.tls"),
            format!(
                "an {} server needs tls with a mode (SIMPLE, MUTUAL, PASSTHROUGH, …)",
                protocol.as_str()
            ),
        );
        return None;
    }
    Some(Server {
        port: port?,
        port_name: port_name?,
        protocol,
        hosts,
        tls,
    })
}

fn read_tls(rep: &mut Reporter<'_>, tls: &Value, at: &str) -> Option<ServerTls> {
    let before = rep.count();
    let mode = string(rep, tls, "mode", at).and_then(|m| {
        let mode = TlsMode::parse(&m);
        if mode.is_none() {
            rep.error(
                format!("{at}.mode"),
                format!("unknown TLS mode {m:?} (one of {})", TlsMode::NAMES),
            );
        }
        mode
    });
    let https_redirect = match lookup(tls, "httpsRedirect") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            rep.error(
                format!("{at}.httpsRedirect"),
                format!("expected true or false, found {}", fields::show(other)),
            );
            false
        }
    };
    let out = ServerTls {
        mode,
        https_redirect,
        server_certificate: string(rep, tls, "serverCertificate", at),
        private_key: string(rep, tls, "privateKey", at),
        ca_certificates: string(rep, tls, "caCertificates", at),
        credential_name: string(rep, tls, "credentialName", at),
    };
    if matches!(mode, Some(TlsMode::Simple | TlsMode::Mutual)) && out.credential_name.is_none() {
        let mode_name = if mode == Some(TlsMode::Simple) {
            "SIMPLE"
        } else {
            "MUTUAL"
        };
        for (field, v) in [
            ("serverCertificate", &out.server_certificate),
            ("privateKey", &out.private_key),
        ] {
            if v.is_none() {
                rep.error(
                    format!("{at}.{field}"),
                    format!("tls mode {mode_name} needs serverCertificate and privateKey, or credentialName"),
                );
            }
        }
        if mode == Some(TlsMode::Mutual) && out.ca_certificates.is_none() {
            rep.error(
                format!("{at}.caCertificates"),
                "tls mode MUTUAL needs caCertificates, or credentialName",
            );
        }
    }
    (rep.count() == before).then_some(out)
}

#[cfg(test)]
mod tests;
