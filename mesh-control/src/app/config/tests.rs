//! Flags, defaults and who may obtain identities.
use super::*;

#[test]
fn durations() {
    let parse = duration::parse_flag;
    assert_eq!(parse("200ms"), Ok(Duration::from_millis(200)));
    assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
    // Go's grammar: fractions, and no days.
    assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
    for bad in ["", "h", "1x", "3650d", "-1s", "1h 30m"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
    let config = ControlConfig::try_parse_from([
        "mesh-control",
        "--ca-dir",
        "/ca",
        "--reload-interval",
        "1.5s",
        "--drain-timeout",
        "2m",
    ])
    .unwrap();
    assert_eq!(config.root_ttl, crate::ca::DEFAULT_ROOT_TTL);
    assert_eq!(config.reload_interval, Duration::from_millis(1500));
    assert_eq!(config.drain_timeout, Duration::from_secs(120));
    let err =
        ControlConfig::try_parse_from(["mesh-control", "--ca-dir", "/ca", "--root-ttl", "3650d"])
            .unwrap_err()
            .to_string();
    assert!(err.contains("unknown unit \"d\""), "{err}");
}

#[test]
fn flags_and_defaults() {
    let config = ControlConfig::try_parse_from([
        "mesh-control",
        "--config-dir",
        "/etc/mesh",
        "--ca-dir",
        "/var/lib/mesh-ca",
        "--cert-ttl",
        "30s",
        "--server-san",
        "cp.example,10.0.0.254",
        "--log-format",
        "json",
    ])
    .unwrap();
    assert_eq!(config.cert_ttl, Duration::from_secs(30));
    assert_eq!(config.reload_interval, Duration::from_secs(1));
    assert_eq!(config.xds_addr, "127.0.0.1:15010".parse().unwrap());
    assert_eq!(config.xds_tls_addr, "127.0.0.1:15012".parse().unwrap());
    assert_eq!(config.admin_addr, "127.0.0.1:15000".parse().unwrap());
    assert_eq!(config.ready_addr, "0.0.0.0:15021".parse().unwrap());
    assert_eq!(config.trust_domain, "cluster.local");
    assert_eq!(config.root_namespace, "istio-system");
    assert_eq!(config.server_sans, ["cp.example", "10.0.0.254"]);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.source, SourceKind::Directory);
    assert_eq!(config.auth_mode(), AuthMode::None);
    assert_eq!(config.token_audience, "istio-ca");
    assert_eq!(
        config.node_agent_accounts,
        [("istio-system".to_string(), "mesh-agent".to_string())]
    );
    assert_eq!(config.cluster_id, "Kubernetes");
    assert!(ControlConfig::try_parse_from(["mesh-control"]).is_err());
}

#[test]
fn defaults_serve_identities_on_loopback_only() {
    let config =
        ControlConfig::try_parse_from(["mesh-control", "--config-dir", "/c", "--ca-dir", "/ca"])
            .unwrap();
    assert_eq!(config.auth_mode(), AuthMode::None);
    assert!(config.xds_addr.ip().is_loopback(), "{}", config.xds_addr);
    assert!(
        config.xds_tls_addr.ip().is_loopback(),
        "{}",
        config.xds_tls_addr
    );
    assert_eq!(config.exposure().unwrap(), Exposure::LoopbackOnly);
    let exposed = ControlConfig {
        xds_tls_addr: "10.0.0.254:15012".parse().unwrap(),
        ..config
    };
    let err = exposed.exposure().unwrap_err();
    assert_eq!(err.flag, "xds-tls-addr");
    let chosen = ControlConfig {
        authenticate: Some(AuthMode::None),
        ..exposed.clone()
    };
    assert_eq!(chosen.exposure().unwrap(), Exposure::Network);
    let authenticated = ControlConfig {
        authenticate: Some(AuthMode::Kubernetes),
        ..exposed
    };
    assert_eq!(authenticated.exposure().unwrap(), Exposure::Authenticated);
}

#[test]
fn kubernetes_source_flags() {
    let config = ControlConfig::try_parse_from([
        "mesh-control",
        "--source",
        "kubernetes",
        "--kubeconfig",
        "/tmp/kc",
        "--ca-dir",
        "/ca",
        "--token-audience",
        "mesh",
        "--node-agent-account",
        "kube-system/agent,mesh/agent2",
    ])
    .unwrap();
    assert_eq!(config.source, SourceKind::Kubernetes);
    assert_eq!(config.auth_mode(), AuthMode::Kubernetes);
    assert_eq!(
        config.kubeconfig.as_deref(),
        Some(std::path::Path::new("/tmp/kc"))
    );
    assert_eq!(config.token_audience, "mesh");
    assert_eq!(config.node_agent_accounts.len(), 2);
    assert_eq!(
        config.node_agent_accounts[1],
        ("mesh".into(), "agent2".into())
    );
    // istiod's spelling of the same list, and the cluster name.
    let istiod = ControlConfig::try_parse_from([
        "mesh-control",
        "--ca-dir",
        "/ca",
        "--config-dir",
        "/c",
        "--ca-trusted-node-accounts",
        "istio-system/ztunnel,istio-system/mesh-agent",
        "--cluster-id",
        "east",
    ])
    .unwrap();
    assert_eq!(
        istiod.node_agent_accounts,
        [
            ("istio-system".to_string(), "ztunnel".to_string()),
            ("istio-system".to_string(), "mesh-agent".to_string())
        ]
    );
    assert_eq!(istiod.cluster_id, "east");
    assert!(ControlConfig::try_parse_from([
        "mesh-control",
        "--ca-dir",
        "/ca",
        "--ca-trusted-node-accounts",
        "ztunnel"
    ])
    .is_err());
    let explicit = ControlConfig::try_parse_from([
        "mesh-control",
        "--source",
        "kubernetes",
        "--ca-dir",
        "/ca",
        "--authenticate",
        "none",
    ])
    .unwrap();
    assert_eq!(explicit.auth_mode(), AuthMode::None);
    let bad = ControlConfig::try_parse_from([
        "mesh-control",
        "--ca-dir",
        "/ca",
        "--node-agent-account",
        "nope",
    ])
    .unwrap_err();
    assert!(bad.to_string().contains("NAMESPACE/NAME"), "{bad}");
}
