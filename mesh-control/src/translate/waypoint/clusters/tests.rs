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
