//! What a person at a shell does with the demo: `ip netns exec <pod> curl
//! http://<service>:<port>/` — the service name resolves inside the pod's
//! namespace (`/etc/netns/<pod>/hosts`) and the connection is captured
//! even though the shell is in no pod cgroup (agents of
//! `Cluster::for_people` attach at the cgroup v2 root).
use std::process::Command;

use mesh_e2e::{cluster::Cluster, require_root, Binaries};

#[test]
fn ip_netns_exec_curl_by_service_name_is_captured() {
    require_root();
    let bins = Binaries::for_tests(env!("CARGO_BIN_EXE_podctl"));
    let pid = std::process::id();
    let (client, server) = (format!("shc{pid}"), format!("shs{pid}"));
    let mut c = Cluster::for_people("shnames", bins, &[("node1", &[&client, &server])]).unwrap();
    c.label_pod(&server, &[("app", "web")]).unwrap();
    c.write_config(
        "10-service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  clusterIP: 10.96.3.10\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 9080\n",
    )
    .unwrap();
    c.resolve_services(&[("web", "default", "10.96.3.10".parse().unwrap())])
        .unwrap();
    c.start_control(&[]).unwrap();
    c.start_agent("node1", &[]).unwrap();
    c.serve_http(&server, "v7", 9080, &[]).unwrap();

    let curl = |url: &str| {
        Command::new("ip")
            .args(["netns", "exec", &client, "curl", "-sS", "-m", "10", url])
            .output()
            .unwrap()
    };
    // The agent learns the service from xDS shortly after start.
    let what = format!("curl http://web/ from {client}");
    let body = mesh_testkit::eventually(&what, std::time::Duration::from_secs(20), || {
        let out = curl("http://web/");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["pod"], server.as_str(), "{body}");
    assert_eq!(reply["version"], "v7", "{body}");
    // Fully qualified works too.
    let out = curl("http://web.default.svc.cluster.local/");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It went through the agent (a VIP has no route without capture).
    let conns = c.agent("node1").connections().unwrap();
    assert!(
        conns.to_string().contains("10.96.3.10:80"),
        "the agent saw no connection to the VIP: {conns}"
    );
}
