//! istioctl's spellings of `proxy-config` kinds, outputs and filters parse
//! to meshctl's.
use clap::Parser as _;
use meshctl::{
    cli::{Cli, Command},
    proxy_config::{Direction, Kind},
    render::Output,
};

fn parse(args: &[&str]) -> Command {
    let mut all = vec!["meshctl"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .command
}

fn kind_of(args: &[&str]) -> Kind {
    match parse(args) {
        Command::ProxyConfig { kind, .. } => kind,
        other => panic!("{args:?} parsed as {other:?}"),
    }
}

#[test]
fn every_istioctl_kind_alias() {
    let cases: &[(&[&str], Kind)] = &[
        (&["cluster", "clusters", "c"], Kind::Cluster),
        (&["listener", "listeners", "l"], Kind::Listener),
        (&["route", "routes", "r"], Kind::Route),
        (&["endpoint", "endpoints", "ep"], Kind::Endpoint),
        (
            &["certificate", "secret", "secrets", "s"],
            Kind::Certificate,
        ),
        (&["workload", "workloads", "w"], Kind::Workload),
        (&["service"], Kind::Service),
        (&["policy"], Kind::Policy),
        (&["connections"], Kind::Connections),
    ];
    for (spellings, want) in cases {
        for s in *spellings {
            assert_eq!(kind_of(&["pc", s, "node1"]), *want, "pc {s}");
            assert_eq!(kind_of(&["proxy-config", s]), *want, "proxy-config {s}");
        }
    }
    let err = Cli::try_parse_from(["meshctl", "pc", "bogus"]).unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn istioctl_filters_and_outputs() {
    let Command::ProxyConfig {
        kind,
        agent,
        port,
        direction,
        fqdn,
        output,
        ..
    } = parse(&[
        "pc",
        "clusters",
        "productpage-v1.default",
        "--port",
        "9080",
        "--direction",
        "outbound",
        "--fqdn",
        "reviews.default",
        "-o",
        "json",
    ])
    else {
        panic!("not proxy-config")
    };
    assert_eq!(kind, Kind::Cluster);
    assert_eq!(agent, "productpage-v1.default");
    assert_eq!(port, Some(9080));
    assert_eq!(direction, Some(Direction::Outbound));
    assert_eq!(fqdn.as_deref(), Some("reviews.default"));
    assert_eq!(output, Output::Json);

    for (text, want) in [
        ("short", Output::Table),
        ("table", Output::Table),
        ("yaml", Output::Yaml),
        ("json", Output::Json),
    ] {
        let Command::ProxyConfig { output, .. } = parse(&["pc", "w", "-o", text]) else {
            panic!("not proxy-config")
        };
        assert_eq!(output, want, "-o {text}");
    }
    let Command::ProxyConfig { direction, .. } = parse(&["pc", "l", "--direction", "inbound"])
    else {
        panic!("not proxy-config")
    };
    assert_eq!(direction, Some(Direction::Inbound));
    for bad in [
        &["pc", "c", "--direction", "sideways"][..],
        &["pc", "c", "--port", "http"][..],
        &["pc", "c", "--port", "70000"][..],
    ] {
        let mut all = vec!["meshctl"];
        all.extend_from_slice(bad);
        assert!(Cli::try_parse_from(all).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn experimental_describe_pod() {
    use meshctl::cli::{DescribeWhat, Experimental};
    for x in ["x", "experimental"] {
        let Command::Experimental {
            command:
                Experimental::Describe {
                    what: DescribeWhat::Pod { pod, output },
                },
        } = parse(&[x, "describe", "pod", "reviews-v1.default", "-o", "json"])
        else {
            panic!("{x} describe pod parsed otherwise")
        };
        assert_eq!(pod, "reviews-v1.default");
        assert_eq!(output, Output::Json);
    }
    assert!(Cli::try_parse_from(["meshctl", "x", "describe", "pod"]).is_err());
}

#[test]
fn port_forward_takes_kubectls_arguments() {
    use meshctl::port_forward::PortSpec;
    match parse(&[
        "port-forward",
        "istio-ingressgateway",
        "8080:80",
        "8443:443",
    ]) {
        Command::PortForward {
            pod,
            ports,
            address,
            allow_non_loopback,
            ..
        } => {
            assert_eq!(pod, "istio-ingressgateway");
            assert_eq!(
                ports,
                [
                    PortSpec {
                        local: 8080,
                        remote: 80
                    },
                    PortSpec {
                        local: 8443,
                        remote: 443
                    }
                ]
            );
            assert_eq!(address, [std::net::IpAddr::from([127, 0, 0, 1])]);
            assert!(!allow_non_loopback);
        }
        other => panic!("parsed as {other:?}"),
    }
    let two = ["pf", "gw", ":80", "--address", "127.0.0.1,::1"];
    let Command::PortForward { address, .. } = parse(&two) else {
        panic!("pf is port-forward");
    };
    assert_eq!(address.len(), 2);
    assert!(Cli::try_parse_from(["meshctl", "port-forward", "gw", "80:x"]).is_err());
    assert!(Cli::try_parse_from(["meshctl", "port-forward", "gw"]).is_err());
}
