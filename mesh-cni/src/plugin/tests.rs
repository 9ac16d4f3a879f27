//! The plugin against a fake agent on a real Unix socket.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixListener,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use super::*;

const PREV: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.22.0.5/24","gateway":"10.22.0.1","interface":0}]}"#;

/// Answers every request with `status`/`body`; records request bodies.
/// The socket file and its directory go on drop.
struct FakeAgent {
    dir: PathBuf,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl FakeAgent {
    fn start(tag: &str, status: u16, body: &'static str) -> Self {
        let dir = std::env::temp_dir().join(format!("mesh-cni-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(dir.join("cni.sock")).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        std::thread::spawn(move || {
            // Bounded: each test makes at most a few requests.
            for stream in listener.incoming().take(8) {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut buf = vec![0; length];
                reader.read_exact(&mut buf).unwrap();
                seen.lock()
                    .unwrap()
                    .push((path, String::from_utf8(buf).unwrap()));
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(reply.as_bytes()).unwrap();
            }
        });
        Self { dir, requests }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("cni.sock")
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn env(command: &str, namespace: &str) -> BTreeMap<String, String> {
    [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", "c-1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            &format!("K8S_POD_NAMESPACE={namespace};K8S_POD_NAME=web;K8S_POD_UID=u-1"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn stdin(socket: &std::path::Path, prev: bool) -> Vec<u8> {
    let prev = if prev {
        format!(r#","prevResult":{PREV}"#)
    } else {
        String::new()
    };
    format!(
        r#"{{"cniVersion":"1.0.0","name":"k8s","type":"mesh-cni","agentSocket":"{}","agentTimeoutSeconds":5{prev}}}"#,
        socket.display()
    )
    .into_bytes()
}

#[test]
fn add_asks_the_agent_and_passes_the_previous_result_through() {
    let agent = FakeAgent::start("add", 200, r#"{"enrolled":true,"reason":"ambient"}"#);
    let out = run(&env("ADD", "default"), &stdin(&agent.socket(), true));
    assert!(out.success, "{out:?}");
    let expected: serde_json::Value = serde_json::from_str(PREV).unwrap();
    assert_eq!(out.stdout, Some(expected));
    let requests = agent.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, "/v1/cni/add");
    let body: PodRequest = serde_json::from_str(&requests[0].1).unwrap();
    assert_eq!(body.pod_name, "web");
    assert_eq!(body.pod_namespace, "default");
    assert_eq!(body.ips, vec!["10.22.0.5".to_string()]);
    assert_eq!(body.netns, "/run/netns/x");
}

#[test]
fn add_fails_closed_when_the_agent_is_unreachable_or_undecided() {
    let gone = std::env::temp_dir().join("mesh-cni-no-such-dir/cni.sock");
    let out = run(&env("ADD", "default"), &stdin(&gone, true));
    assert!(!out.success);
    let json = out.stdout.unwrap();
    assert_eq!(json["code"], 11, "{json}");
    assert!(
        json["details"].as_str().unwrap().contains("cni.sock"),
        "{json}"
    );

    let agent = FakeAgent::start("busy", 503, "no workload yet for default/web");
    let out = run(&env("ADD", "default"), &stdin(&agent.socket(), true));
    assert!(!out.success);
    let json = out.stdout.unwrap();
    assert_eq!(json["code"], 11, "{json}");
    assert!(
        json["details"]
            .as_str()
            .unwrap()
            .contains("no workload yet"),
        "{json}"
    );
}

#[test]
fn excluded_namespaces_and_unchained_configs() {
    let gone = std::env::temp_dir().join("mesh-cni-no-such-dir/cni.sock");
    // kube-system never waits for the agent.
    let out = run(&env("ADD", "kube-system"), &stdin(&gone, true));
    assert!(out.success, "{out:?}");
    // Without prevResult the plugin is misconfigured.
    let out = run(&env("ADD", "default"), &stdin(&gone, false));
    assert!(!out.success);
    assert_eq!(out.stdout.unwrap()["code"], Code::InvalidConfig as u32);
}

#[test]
fn del_succeeds_even_when_the_agent_is_down() {
    let gone = std::env::temp_dir().join("mesh-cni-no-such-dir/cni.sock");
    let out = run(&env("DEL", "default"), &stdin(&gone, false));
    assert!(out.success, "{out:?}");
    assert_eq!(out.stdout, None);
    let agent = FakeAgent::start("del", 200, "{}");
    let out = run(&env("DEL", "default"), &stdin(&agent.socket(), false));
    assert!(out.success);
    let requests = agent.requests.lock().unwrap().clone();
    assert_eq!(requests[0].0, "/v1/cni/del");
    assert!(requests[0].1.contains("c-1"));
}

#[test]
fn check_reports_the_agents_mismatch() {
    let agent = FakeAgent::start(
        "check",
        409,
        "pod default/web should be enrolled but is not",
    );
    let out = run(&env("CHECK", "default"), &stdin(&agent.socket(), true));
    assert!(!out.success);
    let json = out.stdout.unwrap();
    assert!(
        json["details"]
            .as_str()
            .unwrap()
            .contains("should be enrolled"),
        "{json}"
    );
    let agent = FakeAgent::start("check-ok", 200, "{}");
    let out = run(&env("CHECK", "default"), &stdin(&agent.socket(), true));
    assert!(out.success, "{out:?}");
}

#[test]
fn version_lists_the_supported_versions() {
    let mut e = BTreeMap::new();
    e.insert("CNI_COMMAND".to_string(), "VERSION".to_string());
    let out = run(&e, br#"{"cniVersion":"0.4.0"}"#);
    assert!(out.success);
    let json = out.stdout.unwrap();
    assert_eq!(json["cniVersion"], "0.4.0");
    assert_eq!(
        json["supportedVersions"],
        serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
    );
}
