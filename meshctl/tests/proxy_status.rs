//! `meshctl proxy-status` against a real in-process control plane (all
//! listeners on 127.0.0.1:0) with a real Delta ADS client that ACKs.
use std::{future::Future, time::Duration};

use mesh_control::app::{App, ControlConfig};
use mesh_xds::{Backoff, XdsClient, XdsClientConfig};
use meshctl::{render::Output, target::Target};

const TOPOLOGY: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\n  labels: {istio.io/dataplane-mode: ambient}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {nodeName: node-1, serviceAccountName: a}\nstatus: {podIP: 10.244.1.2}\n";

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[tokio::test]
async fn shows_an_acked_agent_as_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (config_dir, ca_dir) = (dir.path().join("config"), dir.path().join("ca"));
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(config_dir.join("mesh.yaml"), TOPOLOGY).unwrap();
    let app = App::build(ControlConfig::for_dirs(&config_dir, &ca_dir))
        .await
        .unwrap();
    let (xds, admin) = (app.xds_addr(), app.admin_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let target = Target::Addr(admin.to_string());

    let empty = meshctl::proxy_status(&target, Output::Table).await.unwrap();
    assert_eq!(
        empty,
        "No agent is connected to the control plane.\nControl plane version: 1\n"
    );

    let mut agent = XdsClientConfig::new(format!("http://{xds}"), "agent~node-1~mesh");
    agent.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        jitter: 0.1,
    };
    let (client, _snapshots) = XdsClient::spawn(agent);
    let out = bounded("SYNCED", async {
        loop {
            let out = meshctl::proxy_status(&target, Output::Table).await.unwrap();
            let synced = out
                .lines()
                .nth(1)
                .is_some_and(|l| cells(l).get(2..4) == Some(&["SYNCED", "SYNCED"][..]));
            if synced {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        cells(lines[0]),
        ["NAME", "PEER", "ADDRESS", "AUTHZ", "VERSION"]
    );
    let row = cells(lines[1]);
    assert_eq!(row[0], "agent~node-1~mesh");
    assert!(row[1].starts_with("127.0.0.1:"), "{out}");
    assert_eq!(row[4], "1");
    assert_eq!(lines[2], "Control plane version: 1");

    // -o json is the control plane's document.
    let json = meshctl::proxy_status(&target, Output::Json).await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["proxies"][0]["node_id"], "agent~node-1~mesh");

    bounded("client stop", client.stop()).await;
    let _ = stop.send(());
    bounded("shutdown", task).await.unwrap().unwrap();

    // Nobody there any more: the error says what to do.
    let err = meshctl::proxy_status(&target, Output::Table)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.starts_with(&format!(
            "cannot reach the control plane admin at {admin}: is mesh-control running? \
             pass --control-plane"
        )),
        "{text}"
    );
}
