//! Translation and validation of whole Listener / RouteConfiguration
//! resources, as the xDS client hands them over.
use std::collections::HashMap;

use envoy_types::pb::envoy::{
    config::{
        core::v3::{address, socket_address::PortSpecifier, Address, Metadata, SocketAddress},
        listener::v3::{filter, Filter, FilterChain, Listener},
        route::v3::{
            route::Action, route_action::ClusterSpecifier, route_match::PathSpecifier, Route,
            RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
        },
    },
    extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
        HttpFilter as PbHttpFilter, Rds,
    },
    r#type::matcher::v3::RegexMatcher,
};
use mesh_xds::{proto::wkt, XdsResource};
use prost::Message;

use super::{listener, route_config, validate, HttpFilter};

fn any<M: Message>(type_name: &str, m: &M) -> wkt::Any {
    wkt::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: m.encode_to_vec(),
    }
}

fn route(path: PathSpecifier, cluster: &str) -> Route {
    Route {
        name: "r".into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(path),
            ..Default::default()
        }),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn vh(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|s| s.to_string()).collect(),
        routes,
        ..Default::default()
    }
}

#[test]
fn bad_regex_is_rejected_with_its_path() {
    let rc = RouteConfiguration {
        name: "waypoint/default/w".into(),
        virtual_hosts: vec![vh(
            "a",
            &["a"],
            vec![
                route(PathSpecifier::Prefix("/".into()), "c"),
                route(PathSpecifier::Prefix("/".into()), "c"),
                route(
                    PathSpecifier::SafeRegex(RegexMatcher {
                        regex: "/(unclosed".into(),
                        engine_type: None,
                    }),
                    "c",
                ),
            ],
        )],
        ..Default::default()
    };
    let err = validate("t", &XdsResource::RouteConfiguration(Box::new(rc))).unwrap_err();
    assert_eq!(err.0, "virtual_hosts[0].routes[2].match.safe_regex.regex");
    assert!(err.1.contains("/(unclosed"), "{}", err.1);
}

#[test]
fn regex_over_the_program_budget_is_rejected_with_its_path() {
    // Each compiles within the regex crate's default limit, far beyond
    // what Istio's RE2 program limit (32768 instructions) admits.
    for pattern in [
        "/(a{1000}){100}",
        r"/(\w{1,100}){1,1000}",
        "/(.{1,1000}){10}",
    ] {
        let rc = RouteConfiguration {
            name: "waypoint/default/w".into(),
            virtual_hosts: vec![vh(
                "a",
                &["a"],
                vec![
                    route(PathSpecifier::Prefix("/".into()), "c"),
                    route(
                        PathSpecifier::SafeRegex(RegexMatcher {
                            regex: pattern.into(),
                            engine_type: None,
                        }),
                        "c",
                    ),
                ],
            )],
            ..Default::default()
        };
        let err = validate("t", &XdsResource::RouteConfiguration(Box::new(rc))).unwrap_err();
        assert_eq!(err.0, "virtual_hosts[0].routes[1].match.safe_regex.regex");
        assert!(err.1.contains("program-size budget"), "{}", err.1);
    }
    // The patterns Istio users write stay well inside it.
    for pattern in [
        r"/api/v[0-9]+/.*",
        r"/\w+",
        "/[a-z0-9-]{1,63}",
        "/.{1,100}",
        r"/\w{3,8}",
    ] {
        let rc = RouteConfiguration {
            name: "waypoint/default/w".into(),
            virtual_hosts: vec![vh(
                "a",
                &["a"],
                vec![route(
                    PathSpecifier::SafeRegex(RegexMatcher {
                        regex: pattern.into(),
                        engine_type: None,
                    }),
                    "c",
                )],
            )],
            ..Default::default()
        };
        assert!(
            validate("t", &XdsResource::RouteConfiguration(Box::new(rc))).is_ok(),
            "{pattern}"
        );
    }
}

#[test]
fn duplicate_domain_and_empty_cluster_are_rejected() {
    let rc = RouteConfiguration {
        virtual_hosts: vec![vh("a", &["a:80"], vec![]), vh("b", &["b", "A:80"], vec![])],
        ..Default::default()
    };
    assert_eq!(
        route_config::translate(&rc).unwrap_err().field,
        "virtual_hosts[1].domains[1]"
    );
    let rc = RouteConfiguration {
        virtual_hosts: vec![vh(
            "a",
            &["a"],
            vec![route(PathSpecifier::Prefix("/".into()), "")],
        )],
        ..Default::default()
    };
    assert_eq!(
        route_config::translate(&rc).unwrap_err().field,
        "virtual_hosts[0].routes[0].route.cluster"
    );
}

#[test]
fn domain_lookup_exact_suffix_prefix_any() {
    let rc = RouteConfiguration {
        name: "rc".into(),
        virtual_hosts: vec![
            vh("exact", &["reviews:9080", "10.96.0.20:9080"], vec![]),
            vh("suffix", &["*.example.com"], vec![]),
            vh("longer-suffix", &["*.api.example.com"], vec![]),
            vh("prefix", &["foo.*"], vec![]),
            vh("any", &["*"], vec![]),
        ],
        ..Default::default()
    };
    let t = route_config::translate(&rc).unwrap();
    let name = |h: &str| t.select(h).map(|v| v.name.clone()).unwrap_or_default();
    assert_eq!(name("10.96.0.20:9080"), "exact");
    assert_eq!(name("Reviews:9080"), "exact");
    assert_eq!(name("x.example.com"), "suffix");
    assert_eq!(name("x.api.example.com"), "longer-suffix");
    assert_eq!(name("foo.bar"), "prefix");
    assert_eq!(name("reviews"), "any");
}

#[test]
fn source_ips_metadata_restricts_the_route() {
    let list = wkt::Value {
        kind: Some(wkt::value::Kind::ListValue(wkt::ListValue {
            values: vec![wkt::Value {
                kind: Some(wkt::value::Kind::StringValue("10.244.1.5".into())),
            }],
        })),
    };
    let mut r = route(PathSpecifier::Prefix("/".into()), "c");
    r.metadata = Some(Metadata {
        filter_metadata: HashMap::from([(
            "mesh".to_string(),
            wkt::Struct {
                fields: HashMap::from([("source_ips".to_string(), list)]),
            },
        )]),
        ..Default::default()
    });
    let t = route_config::translate(&RouteConfiguration {
        virtual_hosts: vec![vh("a", &["a"], vec![r])],
        ..Default::default()
    })
    .unwrap();
    let headers = http::HeaderMap::new();
    let view = super::matcher::RequestView {
        method: &http::Method::GET,
        authority: "a",
        path: "/",
        scheme: "http",
        headers: &headers,
    };
    let vh = t.select("a").unwrap();
    assert!(vh
        .find(&view, Some("10.244.1.5".parse().unwrap()))
        .is_some());
    assert!(vh
        .find(&view, Some("10.244.1.6".parse().unwrap()))
        .is_none());
    assert!(vh.find(&view, None).is_none());
}

fn listener_with(filters: Vec<PbHttpFilter>) -> Listener {
    let hcm = HttpConnectionManager {
        stat_prefix: "w".into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: None,
            route_config_name: "waypoint/default/w".into(),
        })),
        http_filters: filters,
        ..Default::default()
    };
    Listener {
        name: "waypoint/default/w".into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "0.0.0.0".into(),
                port_specifier: Some(PortSpecifier::PortValue(15080)),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(
                    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    &hcm,
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn http_filter(name: &str, type_name: &str, value: Vec<u8>) -> PbHttpFilter {
    PbHttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(wkt::Any {
            type_url: format!("type.googleapis.com/{type_name}"),
            value,
        })),
        ..Default::default()
    }
}

#[test]
fn listener_filters_in_order() {
    let l = listener_with(vec![
        http_filter(
            "envoy.filters.http.fault",
            "envoy.extensions.filters.http.fault.v3.HTTPFault",
            vec![],
        ),
        http_filter(
            "envoy.filters.http.rbac",
            "envoy.extensions.filters.http.rbac.v3.RBAC",
            vec![],
        ),
        http_filter(
            "envoy.filters.http.router",
            "envoy.extensions.filters.http.router.v3.Router",
            vec![],
        ),
    ]);
    let cfg = listener::translate(&l).unwrap();
    assert_eq!(cfg.address, "0.0.0.0:15080");
    let names: Vec<&str> = cfg.filters.iter().map(HttpFilter::name).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.fault",
            "envoy.filters.http.rbac",
            "envoy.filters.http.router"
        ]
    );
    assert!(matches!(&cfg.routes, listener::RouteSource::Rds(n) if n == "waypoint/default/w"));
}

/// A gateway listener's chains each carry the RBAC filter with its rules
/// on the filter (no per-route override), and a chain's active config
/// (what its route stack runs) keeps them.
#[test]
fn every_chain_keeps_its_rbac_rules() {
    use envoy_types::pb::envoy::{
        config::rbac::v3::{
            permission::Rule, principal::Identifier, Permission, Policy, Principal, Rbac as PbRules,
        },
        extensions::filters::http::rbac::v3::Rbac,
    };
    let deny = Rbac {
        rules: Some(PbRules {
            action: 1,
            policies: HashMap::from([(
                "ns[default]-policy[p]-rule[0]".to_string(),
                Policy {
                    permissions: vec![Permission {
                        rule: Some(Rule::Any(true)),
                    }],
                    principals: vec![Principal {
                        identifier: Some(Identifier::Any(true)),
                    }],
                    ..Default::default()
                },
            )]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut l = listener_with(vec![
        http_filter(
            "envoy.filters.http.rbac.deny",
            "envoy.extensions.filters.http.rbac.v3.RBAC",
            deny.encode_to_vec(),
        ),
        http_filter(
            "envoy.filters.http.router",
            "envoy.extensions.filters.http.router.v3.Router",
            vec![],
        ),
    ]);
    let mut second = l.filter_chains[0].clone();
    second.filter_chain_match = Some(Default::default());
    second.filter_chain_match.as_mut().unwrap().server_names = vec!["a.example.com".into()];
    l.filter_chains.push(second);
    let cfg = listener::translate(&l).unwrap();
    assert_eq!(cfg.chains.len(), 2);
    for chain in &cfg.chains {
        let active = super::ActiveConfig::for_chain(&cfg, chain, |_| None).unwrap();
        let rules: Vec<(&str, usize)> = active
            .filters
            .iter()
            .filter_map(|f| match f {
                HttpFilter::Rbac { name, rules } => Some((
                    name.as_str(),
                    rules.as_ref().map_or(0, |r| r.policies.len()),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(rules, [("envoy.filters.http.rbac.deny", 1)]);
    }
}

#[test]
fn listener_without_router_or_with_wrong_type_is_rejected() {
    let l = listener_with(vec![http_filter(
        "envoy.filters.http.fault",
        "envoy.extensions.filters.http.fault.v3.HTTPFault",
        vec![],
    )]);
    let err = validate("t", &XdsResource::Listener(Box::new(l))).unwrap_err();
    assert_eq!(
        err.0,
        "filter_chains[0].filters[0].typed_config.http_filters"
    );
    let l = listener_with(vec![
        http_filter(
            "envoy.filters.http.fault",
            "envoy.extensions.filters.http.rbac.v3.RBAC",
            vec![],
        ),
        http_filter(
            "envoy.filters.http.router",
            "envoy.extensions.filters.http.router.v3.Router",
            vec![],
        ),
    ]);
    let err = validate("t", &XdsResource::Listener(Box::new(l))).unwrap_err();
    assert_eq!(
        err.0,
        "filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"
    );
}

#[test]
fn active_config_follows_the_listeners_rds_name() {
    let l = listener_with(vec![http_filter(
        "envoy.filters.http.router",
        "envoy.extensions.filters.http.router.v3.Router",
        vec![],
    )]);
    let rc = RouteConfiguration {
        name: "waypoint/default/w".into(),
        virtual_hosts: vec![vh(
            "reviews:9080",
            &["reviews:9080"],
            vec![route(PathSpecifier::Prefix("/".into()), "c")],
        )],
        ..Default::default()
    };
    let cfg = super::ActiveConfig::build(
        &[&l],
        |n| (n == rc.name).then_some(&rc),
        "waypoint/default/w",
    )
    .unwrap();
    assert_eq!(cfg.table.vhosts.len(), 1);
    assert_eq!(cfg.listener.as_ref().unwrap().name, "waypoint/default/w");
    let dump = super::dump::routes(&cfg);
    assert_eq!(
        dump[0]["virtual_hosts"][0]["routes"][0]["action"],
        "cluster c"
    );
    assert_eq!(
        dump[0]["virtual_hosts"][0]["routes"][0]["timeout_ms"],
        15000
    );
    assert_eq!(super::dump::listeners(&cfg)[0]["address"], "0.0.0.0:15080");
    // RDS not there yet: an empty table under the listener's name.
    let cfg = super::ActiveConfig::build(&[&l], |_| None, "x").unwrap();
    assert!(cfg.table.vhosts.is_empty());
    assert_eq!(cfg.table.name, "waypoint/default/w");
}

#[test]
fn case_insensitive_prefix_and_path_but_not_regex() {
    let mk = |p: PathSpecifier| {
        let mut r = route(p, "c");
        r.r#match.as_mut().unwrap().case_sensitive = Some(wkt::BoolValue { value: false });
        r
    };
    let t = route_config::translate(&RouteConfiguration {
        virtual_hosts: vec![
            vh("p", &["p"], vec![mk(PathSpecifier::Prefix("/Api".into()))]),
            vh("e", &["e"], vec![mk(PathSpecifier::Path("/Login".into()))]),
            vh(
                "r",
                &["r"],
                vec![mk(PathSpecifier::SafeRegex(RegexMatcher {
                    regex: "/Up.*".into(),
                    engine_type: None,
                }))],
            ),
        ],
        ..Default::default()
    })
    .unwrap();
    let headers = http::HeaderMap::new();
    let hit = |host: &str, path: &str| {
        let view = super::matcher::RequestView {
            method: &http::Method::GET,
            authority: host,
            path,
            scheme: "http",
            headers: &headers,
        };
        t.select(host).unwrap().find(&view, None).is_some()
    };
    assert!(hit("p", "/API/x") && hit("p", "/api"));
    assert!(hit("e", "/login") && !hit("e", "/login/x"));
    assert!(hit("r", "/Upper") && !hit("r", "/upper"));
}

mod tls_context {
    use envoy_types::pb::envoy::{
        config::core::v3::{data_source::Specifier, transport_socket, DataSource, TransportSocket},
        extensions::transport_sockets::tls::v3::{
            common_tls_context::ValidationContextType, CertificateValidationContext,
            CommonTlsContext, DownstreamTlsContext, TlsCertificate,
        },
    };

    use super::*;
    use crate::config::tls::{self, CertificateSource, PemSource};

    fn file(f: &str) -> Option<DataSource> {
        Some(DataSource {
            specifier: Some(Specifier::Filename(f.into())),
            ..Default::default()
        })
    }

    fn socket(ctx: &DownstreamTlsContext) -> TransportSocket {
        TransportSocket {
            name: tls::TLS_TRANSPORT_SOCKET.into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(any(
                "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                ctx,
            ))),
        }
    }

    fn mutual(ca: Option<&str>) -> DownstreamTlsContext {
        DownstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                tls_certificates: vec![TlsCertificate {
                    certificate_chain: file("/c/tls.crt"),
                    private_key: file("/c/tls.key"),
                    ..Default::default()
                }],
                validation_context_type: ca.map(|ca| {
                    ValidationContextType::ValidationContext(CertificateValidationContext {
                        trusted_ca: file(ca),
                        ..Default::default()
                    })
                }),
                ..Default::default()
            }),
            require_client_certificate: Some(wkt::BoolValue { value: true }),
            ..Default::default()
        }
    }

    #[test]
    fn files_and_trusted_ca_are_read_from_the_context() {
        let ctx = tls::translate(Some(&socket(&mutual(Some("/c/ca.crt")))), "ts")
            .unwrap()
            .unwrap();
        assert_eq!(
            ctx.certificate,
            CertificateSource::Files {
                chain: "/c/tls.crt".into(),
                key: "/c/tls.key".into()
            }
        );
        assert!(ctx.require_client_certificate);
        assert_eq!(ctx.client_ca, Some(PemSource::File("/c/ca.crt".into())));
        assert_eq!(tls::translate(None, "ts").unwrap(), None);
    }

    #[test]
    fn client_certificates_without_a_ca_are_rejected() {
        let e = tls::translate(Some(&socket(&mutual(None))), "ts").unwrap_err();
        assert_eq!(e.field, "ts.typed_config.require_client_certificate");
        let mut other = socket(&mutual(Some("/c/ca.crt")));
        other.name = "envoy.transport_sockets.alts".into();
        assert_eq!(
            tls::translate(Some(&other), "ts").unwrap_err().field,
            "ts.name"
        );
    }
}
