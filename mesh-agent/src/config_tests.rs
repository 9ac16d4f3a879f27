//! Flag, file and default resolution of the agent's configuration.
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
    assert!(parse_duration("1d").unwrap_err().contains("unknown unit"));
    assert!(parse_duration("soon").is_err());
}

#[test]
fn xds_without_trust_bundle_is_rejected_by_field_name() {
    let run = RunArgs {
        xds_address: Some("http://10.0.0.254:15010".into()),
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
