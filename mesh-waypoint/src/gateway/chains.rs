//! A gateway listener's filter chains as served: each with its SNI names,
//! its TLS server config (None: plain, or TLS passed through) and what it
//! does with the stream ([`Handler`]: the route stack of its
//! RouteConfiguration, or a `tcp_proxy` target). [`Chains::for_sni`] picks
//! Envoy's way: an exact
//! server name first, then the longest matching wildcard (`*.example.com`),
//! then the chain without names.
use std::sync::Arc;

use rustls::ServerConfig;

use super::tcp::TcpTarget;
use crate::route::Proxy;

/// What a chain does with its (decrypted, if terminated) stream.
#[derive(Clone)]
pub enum Handler {
    /// HTTP/1.1 and h2 through the route stack.
    Http(Arc<Proxy>),
    /// Bytes relayed to a cluster.
    Tcp(Arc<TcpTarget>),
}

pub struct Chain {
    /// Lower-case SNI names; empty = the default chain.
    pub server_names: Vec<String>,
    pub tls: Option<Arc<ServerConfig>>,
    pub handler: Handler,
}

#[derive(Default)]
pub struct Chains {
    pub chains: Vec<Chain>,
}

impl Chains {
    /// Whether connections start with a TLS ClientHello whose SNI picks
    /// the chain (any chain terminates TLS or matches server names).
    pub fn is_tls(&self) -> bool {
        self.chains
            .iter()
            .any(|c| c.tls.is_some() || !c.server_names.is_empty())
    }

    /// The chain for a plain-text connection: the first without TLS.
    pub fn plain(&self) -> Option<&Chain> {
        self.chains.iter().find(|c| c.tls.is_none())
    }

    /// The chain a ClientHello with `sni` selects, if any.
    pub fn for_sni(&self, sni: Option<&str>) -> Option<&Chain> {
        let sni = sni.map(str::to_ascii_lowercase);
        if let Some(sni) = sni.as_deref() {
            if let Some(c) = self
                .chains
                .iter()
                .find(|c| c.server_names.iter().any(|n| n == sni))
            {
                return Some(c);
            }
            let wildcard = self
                .chains
                .iter()
                .filter_map(|c| {
                    c.server_names
                        .iter()
                        .filter_map(|n| n.strip_prefix('*'))
                        .filter(|suffix| suffix.starts_with('.') && sni.len() > suffix.len())
                        .filter(|suffix| sni.ends_with(suffix))
                        .map(str::len)
                        .max()
                        .map(|len| (len, c))
                })
                .max_by_key(|(len, _)| *len);
            if let Some((_, c)) = wildcard {
                return Some(c);
            }
        }
        self.chains.iter().find(|c| c.server_names.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::ActiveConfig, route::Deps, upstream::ClusterManager};

    fn chain(names: &[&str]) -> Chain {
        let clusters = ClusterManager::new(crate::upstream::UpstreamOptions {
            hbone: None,
            identity: None,
        });
        Chain {
            server_names: names.iter().map(|n| n.to_string()).collect(),
            tls: None,
            handler: Handler::Http(Proxy::new(
                Arc::new(ActiveConfig::default()),
                Deps::new(clusters),
            )),
        }
    }

    fn names(c: Option<&Chain>) -> Option<Vec<String>> {
        c.map(|c| c.server_names.clone())
    }

    #[test]
    fn exact_then_longest_wildcard_then_default() {
        let chains = Chains {
            chains: vec![
                chain(&["a.example.com"]),
                chain(&["*.example.com"]),
                chain(&["*.b.example.com"]),
                chain(&[]),
            ],
        };
        let pick = |sni| names(chains.for_sni(sni));
        assert_eq!(
            pick(Some("A.example.com")),
            Some(vec!["a.example.com".into()])
        );
        assert_eq!(
            pick(Some("c.example.com")),
            Some(vec!["*.example.com".into()])
        );
        assert_eq!(
            pick(Some("x.b.example.com")),
            Some(vec!["*.b.example.com".into()])
        );
        assert_eq!(pick(Some("example.com")), Some(vec![]));
        assert_eq!(pick(None), Some(vec![]));
        let no_default = Chains {
            chains: vec![chain(&["a.example.com"])],
        };
        assert!(no_default.for_sni(Some("other.org")).is_none());
        assert!(no_default.for_sni(None).is_none());
    }
}
