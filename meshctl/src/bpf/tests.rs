//! `meshctl bpf` rendering of a report shaped like a real agent instance.
use super::*;

fn fixture() -> Report {
    let prog = |pin: &str, ty: &str, attach: &str, id: u32| ProgramRow {
        pin: pin.into(),
        name: pin.into(),
        program_type: ty.into(),
        attach: attach.into(),
        id,
        tag: "8f2b3c4d5e6f7081".into(),
        what: catalog::program(pin).unwrap().1.into(),
    };
    let map = |pin: &str, ty: &str, entries: Option<u64>, max: u32| MapRow {
        pin: pin.into(),
        name: pin.into(),
        map_type: ty.into(),
        id: 40,
        entries,
        max_entries: max,
        what: catalog::map(pin)
            .unwrap_or("not a pin this meshctl knows")
            .into(),
    };
    Report {
        instance: "mesh".into(),
        dir: "/sys/fs/bpf/mesh".into(),
        programs: vec![
            prog(
                "mesh_connect4",
                "cgroup_sock_addr",
                "cgroup/connect4 (link 7)",
                101,
            ),
            prog(
                "mesh_sockops",
                "sock_ops",
                "sock_ops: not attached (no link pin)",
                103,
            ),
        ],
        maps: vec![
            map("capture_stats", "per_cpu_array", Some(9), 9),
            map("enrolled_netns", "hash_map", Some(2), 4096),
            map("orig_dst_tuple", "lru_hash_map", None, 65536),
        ],
        problems: vec!["maps/strict_pods: permission denied".into()],
    }
}

fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn tables_and_explanations() {
    let out = render(&fixture(), Output::Table);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Agent instance \"mesh\" (/sys/fs/bpf/mesh)");
    assert_eq!(
        cells(lines[2]),
        ["PROGRAM", "TYPE", "ATTACHED", "ID", "TAG"]
    );
    assert_eq!(
        cells(lines[3]),
        [
            "mesh_connect4",
            "cgroup_sock_addr",
            "cgroup/connect4 (link 7)",
            "101",
            "8f2b3c4d5e6f7081"
        ]
    );
    assert_eq!(cells(lines[4])[2], "sock_ops: not attached (no link pin)");
    assert!(lines[6].starts_with("  mesh_connect4: connect() of enrolled pods (IPv4)"));
    let maps = lines.iter().position(|l| l.starts_with("MAP")).unwrap();
    assert_eq!(cells(lines[maps]), ["MAP", "TYPE", "ID", "ENTRIES", "MAX"]);
    assert_eq!(
        cells(lines[maps + 1]),
        ["capture_stats", "per_cpu_array", "40", "9", "9"]
    );
    assert_eq!(
        cells(lines[maps + 2]),
        ["enrolled_netns", "hash_map", "40", "2", "4096"]
    );
    assert_eq!(cells(lines[maps + 3])[3], "?", "uncounted");
    assert!(out.contains("  enrolled_netns: network-namespace cookie → enrolment"));
    assert_eq!(
        *lines.last().unwrap(),
        "warning: maps/strict_pods: permission denied"
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 100), "{out}");
}

#[test]
fn json_and_missing_instance() {
    let out = render(&fixture(), Output::Json);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["programs"][0]["id"], 101);
    assert_eq!(v["maps"][2]["entries"], serde_json::Value::Null);
    let dir = tempfile::tempdir().unwrap();
    let err = collect(dir.path(), "nope").unwrap_err().to_string();
    assert!(err.contains("no agent instance \"nope\""), "{err}");
    assert!(err.contains("--instance nope"), "{err}");
    // An instance directory without pins is an empty report, not an error.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let report = collect(dir.path(), "empty").unwrap();
    assert!(report.programs.is_empty() && report.maps.is_empty());
    assert!(render(&report, Output::Table).contains("No programs pinned."));
}

#[test]
fn every_agent_pin_is_explained() {
    for pin in [
        names::PROG_CONNECT4,
        names::PROG_CONNECT6,
        names::PROG_SOCKOPS,
        names::PROG_INBOUND,
    ] {
        assert!(catalog::program(pin).is_some(), "{pin}");
    }
    for pin in [
        names::MAP_ENROLLED,
        names::MAP_EXCLUDED,
        names::MAP_ORIG_BY_SOCKET,
        names::MAP_ORIG_BY_TUPLE,
        names::MAP_CONFIG,
        names::MAP_STATS,
        names::MAP_STRICT,
        names::MAP_DENY,
        names::MAP_AGENT_IDENTITY,
        names::MAP_AGENT_CONNS,
        names::MAP_PROBE_PORTS,
    ] {
        assert!(catalog::map(pin).is_some(), "{pin}");
    }
    assert_eq!(snake("LruHash"), "lru_hash");
}
