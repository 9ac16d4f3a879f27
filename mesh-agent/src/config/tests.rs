//! Flag, file and default resolution of the agent's configuration.
use std::net::SocketAddr;

use mesh_admin::duration::parse_flag as parse_duration;

use super::*;

fn common() -> CommonArgs {
    CommonArgs {
        config: None,
        instance: None,
        bpffs: None,
        log: None,
        log_format: None,
    }
}

#[test]
fn flags_override_file_which_overrides_defaults() {
    let file: FileConfig =
        toml::from_str("outbound_port = 16001\nbuffer_size = 8192\ninstance = \"f\"").unwrap();
    let run = RunArgs {
        outbound_port: Some(17001),
        ..Default::default()
    };
    let cfg = AgentConfig::resolve(&common(), &run, &file).unwrap();
    assert_eq!(cfg.outbound_port, 17001);
    assert_eq!(cfg.buffer_size, 8192);
    assert_eq!(cfg.pins.instance, "f");
    assert_eq!(cfg.admin_addr, SocketAddr::from(([127, 0, 0, 1], 15000)));
}

#[test]
fn unknown_file_keys_are_rejected_by_name() {
    let err = toml::from_str::<FileConfig>("outbound_prot = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("outbound_prot"), "{err}");
}

#[test]
fn durations_accept_units_and_reject_garbage() {
    assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
    assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
    assert_eq!(parse_duration("15").unwrap().as_secs(), 15);
    assert!(parse_duration("1d")
        .unwrap_err()
        .to_string()
        .contains("unknown unit"));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn xds_without_trust_bundle_is_rejected_by_field_name() {
    let run = RunArgs {
        xds_addr: Some("http://10.0.0.254:15010".into()),
        ..Default::default()
    };
    let err = AgentConfig::resolve(&common(), &run, &FileConfig::default()).unwrap_err();
    assert!(err.to_string().contains("trust_bundle"), "{err}");
}

#[test]
fn cni_flags_default_and_need_a_control_plane() {
    let cfg = AgentConfig::resolve(&common(), &RunArgs::default(), &FileConfig::default()).unwrap();
    assert!(cfg.cni.is_none());
    let cli = Cli::try_parse_from([
        "mesh-agent",
        "run",
        "--cni-socket",
        "/tmp/c.sock",
        "--enroll-wait",
        "3s",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    let err = AgentConfig::resolve(&cli.common, &run, &FileConfig::default()).unwrap_err();
    assert!(err.to_string().contains("cni_socket"), "{err}");
    let file: FileConfig = toml::from_str(
        "xds_address = \"http://10.0.0.254:15010\"\ntrust_bundle = \"/tmp/root.pem\"",
    )
    .unwrap();
    let cfg = AgentConfig::resolve(&cli.common, &run, &file).unwrap();
    let cni = cfg.cni.unwrap();
    assert_eq!(cni.socket, PathBuf::from("/tmp/c.sock"));
    assert_eq!(cni.enroll_wait.as_secs(), 3);
    assert_eq!(cni.records, PathBuf::from("/var/run/mesh/pods"));
    assert_eq!(cni.proc_root, PathBuf::from("/proc"));
    assert_eq!(cni.netns_dir, PathBuf::from("/run/netns"));
}

#[test]
fn hbone_port_cannot_be_the_capture_port() {
    let run = RunArgs {
        outbound_port: Some(15008),
        ..Default::default()
    };
    let err = AgentConfig::resolve(&common(), &run, &FileConfig::default()).unwrap_err();
    assert!(err.to_string().contains("outbound_port"), "{err}");
}

#[test]
fn telemetry_flags_default_on_and_switch_off() {
    let cfg = AgentConfig::resolve(&common(), &RunArgs::default(), &FileConfig::default()).unwrap();
    assert!(cfg.metrics && cfg.access_log);
    assert_eq!(cfg.metrics_addr, SocketAddr::from(([0, 0, 0, 0], 15020)));
    assert_eq!(cfg.ready_addr, SocketAddr::from(([0, 0, 0, 0], 15021)));
    assert_eq!(cfg.drain_timeout, std::time::Duration::from_secs(5));
    let cli = Cli::try_parse_from([
        "mesh-agent",
        "run",
        "--metrics=false",
        "--access-log",
        "false",
        "--drain-timeout",
        "30s",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    let file: FileConfig = toml::from_str("access_log = true\nmetrics = true").unwrap();
    let cfg = AgentConfig::resolve(&cli.common, &run, &file).unwrap();
    assert!(!cfg.metrics && !cfg.access_log);
    assert_eq!(cfg.drain_timeout.as_secs(), 30);
    // A bare flag means true.
    let cli = Cli::try_parse_from(["mesh-agent", "run", "--metrics"]).unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    assert_eq!(run.metrics, Some(true));
}

#[test]
fn old_flag_names_and_file_keys_still_work() {
    let cli = Cli::try_parse_from([
        "mesh-agent",
        "run",
        "--xds-address",
        "http://10.0.0.254:15010",
        "--ca-address",
        "https://ca:15012",
        "--trust-bundle",
        "/tmp/root.pem",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    assert_eq!(run.xds_addr.as_deref(), Some("http://10.0.0.254:15010"));
    assert_eq!(run.ca_addr.as_deref(), Some("https://ca:15012"));
    let file: FileConfig = toml::from_str(
        "xds_address = \"http://x:15010\"\nca_address = \"http://ca:15010\"\n\
         trust_bundle = \"/tmp/root.pem\"\ncert_ttl_seconds = 3600\n\
         drain_timeout_seconds = 7\nenroll_wait_seconds = 2\ncni_socket = \"/tmp/c.sock\"",
    )
    .unwrap();
    let cfg = AgentConfig::resolve(&common(), &RunArgs::default(), &file).unwrap();
    let mesh = cfg.mesh.unwrap();
    assert_eq!(mesh.xds_address, "http://x:15010");
    assert_eq!(mesh.ca_address, "http://ca:15010");
    assert_eq!(mesh.cert_ttl.as_secs(), 3600);
    assert_eq!(cfg.drain_timeout.as_secs(), 7);
    assert_eq!(cfg.cni.unwrap().enroll_wait.as_secs(), 2);
}

#[test]
fn file_durations_are_go_durations() {
    let file: FileConfig = toml::from_str(
        "cert_ttl = \"1h30m\"\ndrain_timeout = \"1.5s\"\nconnect_timeout = \"250ms\"",
    )
    .unwrap();
    assert_eq!(
        file.run.cert_ttl,
        Some(std::time::Duration::from_secs(5400))
    );
    let cfg = AgentConfig::resolve(&common(), &RunArgs::default(), &file).unwrap();
    assert_eq!(cfg.drain_timeout, std::time::Duration::from_millis(1500));
    assert_eq!(cfg.connect_timeout, std::time::Duration::from_millis(250));
    let defaults =
        AgentConfig::resolve(&common(), &RunArgs::default(), &FileConfig::default()).unwrap();
    assert_eq!(defaults.connect_timeout, std::time::Duration::from_secs(10));
    let err = toml::from_str::<FileConfig>("cert_ttl = \"1d\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown unit"), "{err}");
    let err = toml::from_str::<FileConfig>("config = \"/etc/other.toml\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("config"), "{err}");
}

#[test]
fn the_child_command_line_carries_every_merged_setting() {
    let file: FileConfig = toml::from_str(
        "instance = \"f\"\nxds_addr = \"http://x:15010\"\ntrust_bundle = \"/tmp/root.pem\"\n\
         cert_ttl = \"90m\"\nmetrics = false\nlog_format = \"json\"",
    )
    .unwrap();
    let run = RunArgs {
        outbound_port: Some(16001),
        redirect_ipv6: Some("fd00::1".parse().unwrap()),
        drain_timeout: Some(std::time::Duration::from_millis(1500)),
        ..Default::default()
    };
    let cfg = AgentConfig::resolve(&common(), &run, &file).unwrap();
    let mut argv: Vec<std::ffi::OsString> = vec!["mesh-agent".into()];
    argv.extend(cfg.common_args.to_args());
    argv.push("install".into());
    argv.extend(cfg.args.to_args());
    let cli = Cli::try_parse_from(&argv).unwrap();
    let Command::Install(child) = cli.command else {
        panic!("not install: {argv:?}")
    };
    assert_eq!(child, cfg.args);
    assert_eq!(cli.common, cfg.common_args);
    assert_eq!(child.metrics, Some(false));
    assert_eq!(child.cert_ttl, Some(std::time::Duration::from_secs(5400)));
    assert_eq!(cli.common.log_format, Some(LogFormat::Json));
    // Unset settings stay unset, so the child applies the same defaults.
    assert_eq!(child.admin_addr, None);
}

#[test]
fn dns_proxy_defaults_on_and_the_upstream_comes_from_flag_file_or_resolv_conf() {
    let cfg = AgentConfig::resolve(&common(), &RunArgs::default(), &FileConfig::default()).unwrap();
    assert!(cfg.dns_proxy);
    let cli = Cli::try_parse_from([
        "mesh-agent",
        "run",
        "--dns-proxy=false",
        "--dns-upstream",
        "10.0.0.53:5353",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    let file: FileConfig = toml::from_str("dns_upstream = \"10.9.9.9:53\"").unwrap();
    let cfg = AgentConfig::resolve(&cli.common, &run, &file).unwrap();
    assert!(!cfg.dns_proxy);
    assert_eq!(cfg.dns_upstream, Some("10.0.0.53:5353".parse().unwrap()));
    let cfg = AgentConfig::resolve(&common(), &RunArgs::default(), &file).unwrap();
    assert_eq!(cfg.dns_upstream, Some("10.9.9.9:53".parse().unwrap()));
    assert!(Cli::try_parse_from(["mesh-agent", "run", "--dns-upstream", "10.0.0.53"]).is_err());
    // The child's command line carries them back.
    assert!(run
        .to_args()
        .contains(&std::ffi::OsString::from("--dns-upstream=10.0.0.53:5353")));
}

#[test]
fn the_first_nameserver_of_resolv_conf_is_the_default_upstream() {
    let conf = "# generated\nsearch example.org\nnameserver fe80::1%eth0\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
    assert_eq!(
        super::resolve::first_nameserver(conf),
        Some("10.0.0.2:53".parse().unwrap()),
        "a scoped IPv6 address does not parse and is skipped"
    );
    assert_eq!(super::resolve::first_nameserver("search x\n"), None);
    assert_eq!(
        super::resolve::first_nameserver("nameserver 2001:db8::53"),
        Some("[2001:db8::53]:53".parse().unwrap())
    );
}

#[test]
fn node_proxy_identity_defaults_and_checks() {
    let base = RunArgs {
        xds_addr: Some("https://istiod.istio-system.svc:15012".into()),
        trust_bundle: Some("/tmp/root.pem".into()),
        node_name: Some("ip-10-0-0-1.ec2.internal".into()),
        ..Default::default()
    };
    let cfg = AgentConfig::resolve(&common(), &base, &FileConfig::default()).unwrap();
    let mesh = cfg.mesh.unwrap();
    assert_eq!(mesh.cluster_id, "Kubernetes");
    assert_eq!(mesh.pod_name, "mesh-agent-ip-10-0-0-1-ec2-internal");
    assert_eq!(mesh.pod_namespace, "istio-system");

    let cli = Cli::try_parse_from([
        "mesh-agent",
        "run",
        "--cluster-id",
        "east",
        "--pod-name",
        "mesh-agent-x7k2p",
        "--pod-namespace",
        "mesh-system",
    ])
    .unwrap();
    let Command::Run(run) = cli.command else {
        panic!("not run")
    };
    let cfg = AgentConfig::resolve(&common(), &run.or(&base), &FileConfig::default()).unwrap();
    let mesh = cfg.mesh.unwrap();
    assert_eq!(
        (mesh.cluster_id.as_str(), mesh.pod_name.as_str()),
        ("east", "mesh-agent-x7k2p")
    );
    assert_eq!(mesh.pod_namespace, "mesh-system");

    for (field, run) in [
        (
            "cluster_id",
            RunArgs {
                cluster_id: Some("two words".into()),
                ..base.clone()
            },
        ),
        (
            "pod_name",
            RunArgs {
                pod_name: Some("a~b".into()),
                ..base.clone()
            },
        ),
        (
            "pod_namespace",
            RunArgs {
                pod_namespace: Some("a.b".into()),
                ..base.clone()
            },
        ),
    ] {
        let err = AgentConfig::resolve(&common(), &run, &FileConfig::default()).unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}
