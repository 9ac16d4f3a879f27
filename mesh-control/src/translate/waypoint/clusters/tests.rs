use envoy_types::pb::envoy::{
    config::cluster::v3::cluster::{LbConfig, LbPolicy},
    extensions::upstreams::http::v3::http_protocol_options::{
        explicit_http_config::ProtocolConfig, UpstreamProtocolOptions,
    },
};
use prost::Message as _;

use super::*;
use crate::model::routing::{ConsistentHash, HashKey, HttpSettings, TcpSettings};

fn protocol(c: &Cluster) -> ProtocolConfig {
    let any = &c.typed_extension_protocol_options[PROTOCOL_OPTIONS_KEY];
    let opts = HttpProtocolOptions::decode(any.value.as_slice()).unwrap();
    let Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) = opts.upstream_protocol_options
    else {
        panic!("not explicit");
    };
    e.protocol_config.unwrap()
}

#[test]
fn defaults_are_istios() {
    let c = cluster(
        "outbound|80||a.b.svc.cluster.local",
        false,
        &PolicySettings::default(),
    );
    assert_eq!(c.lb_policy, LbPolicy::LeastRequest as i32);
    assert_eq!(
        c.connect_timeout,
        Some(pb::duration(DEFAULT_CONNECT_TIMEOUT))
    );
    assert_eq!(
        c.eds_cluster_config.as_ref().unwrap().service_name,
        "outbound|80||a.b.svc.cluster.local"
    );
    let th = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(th.max_connections.unwrap().value, u32::MAX);
    assert!(c.outlier_detection.is_none());
    assert!(matches!(
        protocol(&c),
        ProtocolConfig::HttpProtocolOptions(_)
    ));
    let h2 = cluster("x", true, &PolicySettings::default());
    assert!(matches!(
        protocol(&h2),
        ProtocolConfig::Http2ProtocolOptions(_)
    ));
}

#[test]
fn consistent_hash_picks_ring_hash_or_maglev() {
    let hashed = |maglev: Option<u64>| PolicySettings {
        load_balancer: Some(LoadBalancer {
            consistent_hash: Some(ConsistentHash {
                key: HashKey::UseSourceIp,
                ring_hash_minimum_ring_size: None,
                maglev_table_size: maglev,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ring = cluster("x", false, &hashed(None));
    assert_eq!(ring.lb_policy, LbPolicy::RingHash as i32);
    let Some(LbConfig::RingHashLbConfig(cfg)) = ring.lb_config else {
        panic!("no ring config");
    };
    assert_eq!(cfg.minimum_ring_size.unwrap().value, 1024);
    let maglev = cluster("x", false, &hashed(Some(65537)));
    assert_eq!(maglev.lb_policy, LbPolicy::Maglev as i32);
    let Some(LbConfig::MaglevLbConfig(cfg)) = maglev.lb_config else {
        panic!("no maglev config");
    };
    assert_eq!(cfg.table_size.unwrap().value, 65537);
}

#[test]
fn connection_pool_limits_and_timeouts() {
    let s = PolicySettings {
        connection_pool: Some(ConnectionPool {
            tcp: Some(TcpSettings {
                max_connections: Some(10),
                connect_timeout: Some(std::time::Duration::from_millis(250)),
                ..Default::default()
            }),
            http: Some(HttpSettings {
                http2_max_requests: Some(100),
                max_retries: Some(3),
                idle_timeout: Some(std::time::Duration::from_secs(30)),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let c = cluster("x", false, &s);
    assert_eq!(
        c.connect_timeout,
        Some(pb::duration(std::time::Duration::from_millis(250)))
    );
    let th = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(
        (
            th.max_connections.unwrap().value,
            th.max_pending_requests.unwrap().value,
            th.max_requests.unwrap().value,
            th.max_retries.unwrap().value
        ),
        (10, u32::MAX, 100, 3)
    );
    let any = &c.typed_extension_protocol_options[PROTOCOL_OPTIONS_KEY];
    let opts = HttpProtocolOptions::decode(any.value.as_slice()).unwrap();
    assert_eq!(
        opts.common_http_protocol_options.unwrap().idle_timeout,
        Some(pb::duration(std::time::Duration::from_secs(30)))
    );
}

#[test]
fn grpc_and_http2_ports_are_http2() {
    let svc = Service {
        port_protocols: [
            (1, "grpc-web".into()),
            (2, "http".into()),
            (3, "h2c".into()),
        ]
        .into(),
        ..Default::default()
    };
    assert!(http2(&svc, 1));
    assert!(!http2(&svc, 2));
    assert!(http2(&svc, 3));
    assert!(!http2(&svc, 4));
}

mod external_hosts {
    use envoy_types::pb::envoy::{
        config::{
            cluster::v3::{
                cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbConfig},
                Cluster,
            },
            core::v3::{address, data_source::Specifier, socket_address, transport_socket},
            endpoint::v3::lb_endpoint::HostIdentifier,
        },
        extensions::transport_sockets::tls::v3::{
            common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
            UpstreamTlsContext,
        },
    };
    use prost::Message as _;

    use super::super::{clusters, external, tls};
    use crate::{
        model::{
            routing::{PolicySettings, TrafficPolicy},
            service_entry::{
                EndpointAddress, External, Location, Resolution, ServiceEntryEndpoint,
            },
            DestinationRule, MeshState, Service,
        },
        translate::waypoint::{endpoints, Cx},
    };

    fn entry(resolution: Resolution, endpoints: Vec<ServiceEntryEndpoint>) -> Service {
        Service {
            name: "edition-cnn".into(),
            namespace: "default".into(),
            hostname: "edition.cnn.com".into(),
            vips: vec!["240.240.0.1".parse().unwrap()],
            ports: [(80, 443), (443, 443)].into(),
            port_protocols: [(80, "http-port".into()), (443, "https-port".into())].into(),
            external: Some(External {
                entry: "default/edition-cnn".into(),
                location: Location::MeshExternal,
                resolution,
                endpoints,
                selector: None,
                export_to: vec![],
                subject_alt_names: vec!["entry-san.example".into()],
                port_names: [(80, "http-port".into()), (443, "https-port".into())].into(),
                allocated_vips: true,
            }),
            ..Default::default()
        }
    }

    fn tls_rule(port_tls: &str) -> DestinationRule {
        DestinationRule {
            name: "edition-cnn-com".into(),
            namespace: "default".into(),
            file: "f".into(),
            host: "edition.cnn.com".into(),
            traffic_policy: Some(TrafficPolicy {
                port_level: vec![(
                    80,
                    PolicySettings {
                        tls: Some(serde_yaml::from_str(port_tls).unwrap()),
                        ..Default::default()
                    },
                )],
                ..Default::default()
            }),
            subsets: vec![],
            export_to: vec![],
            workload_selector: None,
            unknown: vec![],
        }
    }

    fn state(svc: Service, rules: Vec<DestinationRule>) -> MeshState {
        MeshState {
            services: [("default/edition-cnn".to_string(), svc)].into(),
            destination_rules: rules,
            ..Default::default()
        }
    }

    fn kind(c: &Cluster) -> DiscoveryType {
        let Some(ClusterDiscoveryType::Type(t)) = c.cluster_discovery_type else {
            panic!("no type");
        };
        DiscoveryType::try_from(t).unwrap()
    }

    fn upstream_tls(c: &Cluster) -> UpstreamTlsContext {
        let ts = c.transport_socket.as_ref().expect("transport socket");
        assert_eq!(ts.name, "envoy.transport_sockets.tls");
        let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
            panic!("no typed config");
        };
        UpstreamTlsContext::decode(any.value.as_slice()).unwrap()
    }

    fn hosts(c: &Cluster) -> Vec<(String, u32)> {
        c.load_assignment.as_ref().unwrap().endpoints[0]
            .lb_endpoints
            .iter()
            .map(|e| {
                let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                    panic!("no endpoint");
                };
                let Some(address::Address::SocketAddress(sa)) =
                    ep.address.as_ref().unwrap().address.as_ref()
                else {
                    panic!("no socket address");
                };
                let Some(socket_address::PortSpecifier::PortValue(p)) = sa.port_specifier else {
                    panic!("no port");
                };
                (sa.address.clone(), p)
            })
            .collect()
    }

    #[test]
    #[allow(deprecated)]
    fn dns_is_strict_dns_on_the_host_at_its_target_port_with_tls_on_port_80() {
        let st = state(
            entry(Resolution::Dns, vec![]),
            vec![tls_rule("{mode: SIMPLE}")],
        );
        let cx = Cx::new(&st);
        let all = clusters(&cx);
        let c80 = all
            .iter()
            .find(|c| c.name == "outbound|80||edition.cnn.com")
            .unwrap();
        assert_eq!(kind(c80), DiscoveryType::StrictDns);
        assert!(c80.eds_cluster_config.is_none());
        assert!(c80.respect_dns_ttl);
        assert_eq!(c80.dns_lookup_family, DnsLookupFamily::V4Preferred as i32);
        assert_eq!(hosts(c80), vec![("edition.cnn.com".to_string(), 443)]);
        let t = upstream_tls(c80);
        assert_eq!(t.sni, "edition.cnn.com");
        let Some(ValidationContextType::ValidationContext(v)) =
            t.common_tls_context.unwrap().validation_context_type
        else {
            panic!("no validation context");
        };
        assert_eq!(
            v.trusted_ca.unwrap().specifier,
            Some(Specifier::Filename(tls::SYSTEM_CA_BUNDLE.into())),
            "the system roots without a CA"
        );
        assert_eq!(v.match_typed_subject_alt_names.len(), 1, "the entry's SANs");
        // Port 443 has no TLS setting: the application's own TLS passes.
        let c443 = all
            .iter()
            .find(|c| c.name == "outbound|443||edition.cnn.com")
            .unwrap();
        assert!(c443.transport_socket.is_none());
        // No EDS assignment for DNS clusters.
        assert!(endpoints::endpoints(&cx).is_empty());
        // Telemetry names the service by its host.
        let md = &c80.metadata.as_ref().unwrap().filter_metadata["istio"];
        assert!(format!("{md:?}").contains("edition.cnn.com"));
    }

    #[test]
    fn dns_round_robin_is_logical_dns_over_the_inline_endpoints() {
        let ep = |h: &str, port: Option<u16>| ServiceEntryEndpoint {
            address: EndpointAddress::Host(h.into()),
            ports: port
                .map(|p| [("http-port".to_string(), p)].into())
                .unwrap_or_default(),
            labels: Default::default(),
            weight: 0,
        };
        let st = state(
            entry(
                Resolution::DnsRoundRobin,
                vec![ep("a.example", Some(8443)), ep("b.example", None)],
            ),
            vec![],
        );
        let all = clusters(&Cx::new(&st));
        let (c80, c443) = (&all[0], &all[1]);
        assert_eq!(c443.name, "outbound|443||edition.cnn.com");
        assert_eq!(kind(c443), DiscoveryType::LogicalDns);
        assert_eq!(
            hosts(c80),
            vec![
                ("a.example".to_string(), 8443),
                ("b.example".to_string(), 443)
            ]
        );
    }

    #[test]
    fn static_is_eds_over_the_inline_ips_and_none_is_original_dst() {
        let ip = |a: &str| ServiceEntryEndpoint {
            address: EndpointAddress::Ip(a.parse().unwrap()),
            ports: Default::default(),
            labels: Default::default(),
            weight: 3,
        };
        let st = state(
            entry(Resolution::Static, vec![ip("192.0.2.1"), ip("192.0.2.2")]),
            vec![],
        );
        let cx = Cx::new(&st);
        let c = &clusters(&cx)[0];
        assert_eq!(kind(c), DiscoveryType::Eds);
        let clas = endpoints::endpoints(&cx);
        let cla = clas
            .iter()
            .find(|a| a.cluster_name == "outbound|80||edition.cnn.com")
            .unwrap();
        let eps = &cla.endpoints[0].lb_endpoints;
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].load_balancing_weight.unwrap().value, 3);
        assert!(eps[0].metadata.is_none(), "no workload uid: never HBONE");

        let st = state(entry(Resolution::None, vec![]), vec![]);
        let all = clusters(&Cx::new(&st));
        let c80 = &all[0];
        assert_eq!(kind(c80), DiscoveryType::OriginalDst);
        assert_eq!(
            c80.lb_policy,
            envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy::ClusterProvided as i32
        );
        let Some(LbConfig::OriginalDstLbConfig(o)) = &c80.lb_config else {
            panic!("no port override");
        };
        assert_eq!(o.upstream_port_override.unwrap().value, 443);
        assert!(all[1].lb_config.is_none(), "443 → 443 needs no override");
    }

    #[test]
    fn mutual_tls_from_files_or_a_credential_and_bad_tls_drops_the_cluster() {
        let files = tls::parse(
            &serde_yaml::from_str(
                "{mode: MUTUAL, sni: api.example, caCertificates: /etc/ca.pem, \
                 clientCertificate: /etc/c.pem, privateKey: /etc/k.pem, \
                 subjectAltNames: [api.example, 'spiffe://td/ns/a/sa/b']}",
            )
            .unwrap(),
        )
        .unwrap();
        let ts = tls::transport_socket(&files, "edition.cnn.com", &["x".into()]).unwrap();
        let c = Cluster {
            transport_socket: Some(ts),
            ..Default::default()
        };
        let t = upstream_tls(&c);
        assert_eq!(t.sni, "api.example");
        let common = t.common_tls_context.unwrap();
        let cert = &common.tls_certificates[0];
        assert_eq!(
            cert.certificate_chain.as_ref().unwrap().specifier,
            Some(Specifier::Filename("/etc/c.pem".into()))
        );
        let Some(ValidationContextType::ValidationContext(v)) = common.validation_context_type
        else {
            panic!("no validation context");
        };
        assert_eq!(
            v.trusted_ca.unwrap().specifier,
            Some(Specifier::Filename("/etc/ca.pem".into()))
        );
        let types: Vec<i32> = v
            .match_typed_subject_alt_names
            .iter()
            .map(|m| m.san_type)
            .collect();
        assert_eq!(types, vec![SanType::Dns as i32, SanType::Uri as i32]);

        let cred =
            tls::parse(&serde_yaml::from_str("{mode: MUTUAL, credentialName: client}").unwrap())
                .unwrap();
        let c = Cluster {
            transport_socket: tls::transport_socket(&cred, "h", &[]),
            ..Default::default()
        };
        let common = upstream_tls(&c).common_tls_context.unwrap();
        assert_eq!(
            common.tls_certificate_sds_secret_configs[0].name,
            "kubernetes://client"
        );
        let Some(ValidationContextType::CombinedValidationContext(cv)) =
            common.validation_context_type
        else {
            panic!("no combined validation context");
        };
        assert_eq!(
            cv.validation_context_sds_secret_config.unwrap().name,
            "kubernetes://client-cacert"
        );

        for off in ["{mode: DISABLE}", "{mode: ISTIO_MUTUAL}"] {
            let t = tls::parse(&serde_yaml::from_str(off).unwrap()).unwrap();
            assert!(tls::transport_socket(&t, "h", &[]).is_none(), "{off}");
        }
        for bad in [
            "{mode: MUTUAL}",
            "{mode: SIMPEL}",
            "{mode: SIMPLE, sni: [a]}",
        ] {
            let err = tls::parse(&serde_yaml::from_str(bad).unwrap()).unwrap_err();
            assert!(err.starts_with("tls"), "{bad}: {err}");
        }
        // A rule whose port-80 tls cannot be read: that cluster is left
        // out, never sent in plaintext; port 443 is unaffected.
        let st = state(
            entry(Resolution::Dns, vec![]),
            vec![tls_rule("{mode: MUTUAL}")],
        );
        let names: Vec<String> = clusters(&Cx::new(&st))
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, vec!["outbound|443||edition.cnn.com".to_string()]);
        assert!(external::uses_eds(&Service::default()));
    }
}

/// Istio's egress TLS-origination example, unmodified, through the real
/// source: the entry's port 80 cluster resolves the host by DNS at port
/// 443 and originates TLS; port 443 passes the application's TLS.
#[test]
#[allow(deprecated)]
fn istio_tls_origination_yaml_loads_into_these_clusters() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: edition-cnn, namespace: default}
spec:
  hosts: [edition.cnn.com]
  ports:
  - {number: 80, name: http-port, protocol: HTTP, targetPort: 443}
  - {number: 443, name: https-port, protocol: HTTPS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: edition-cnn-com, namespace: default}
spec:
  host: edition.cnn.com
  trafficPolicy:
    portLevelSettings:
    - port: {number: 80}
      tls: {mode: SIMPLE}
";
    let files = vec![
        ("00-base.yaml".to_string(), super::super::tests::base_yaml()),
        ("egress.yaml".to_string(), yaml.to_string()),
    ];
    let state = crate::source::load_files(&files, &crate::source::SourceConfig::default())
        .unwrap_or_else(|p| panic!("{p:?}"))
        .state;
    let all = clusters(&Cx::new(&state));
    let c80 = all
        .iter()
        .find(|c| c.name == "outbound|80||edition.cnn.com")
        .expect("port 80 cluster");
    assert_eq!(
        c80.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32))
    );
    assert!(c80.respect_dns_ttl);
    let cla = c80.load_assignment.as_ref().unwrap();
    assert_eq!(
        format!("{:?}", cla.endpoints[0].lb_endpoints[0])
            .matches("edition.cnn.com")
            .count(),
        2,
        "address and hostname"
    );
    assert!(format!("{cla:?}").contains("PortValue(443)"));
    assert!(c80.transport_socket.is_some());
    let c443 = all
        .iter()
        .find(|c| c.name == "outbound|443||edition.cnn.com")
        .expect("port 443 cluster");
    assert!(c443.transport_socket.is_none());
}
