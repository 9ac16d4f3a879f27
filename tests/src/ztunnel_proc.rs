//! A real Istio ztunnel (a binary the user built; the project never
//! fetches or builds it) running in dedicated mode inside one pod's
//! network namespace, fed by our mesh-control over TLS on 15012
//! (workloads, policies and its certificate). Used by the real-peer tests
//! (`tests/ztunnel_real.rs`) and by `cargo xtask bench l4 --ztunnel`.
//!
//! There is no iptables in the pods: inbound, peers reach ztunnel's HBONE
//! listener on `<pod IP>:15008` and it connects to the application from
//! the pod's own address (`ENABLE_ORIG_SRC=false`); outbound, a client in
//! the pod asks ztunnel's SOCKS5 listener ([`SOCKS5_ADDR`]).
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use mesh_testkit::{try_eventually, Attempt};

use crate::cluster::{Cluster, CONTROL_IP};

/// ztunnel's SOCKS5 listener, inside its pod (loopback only).
pub const SOCKS5_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15080);
/// ztunnel's readiness endpoint (`/healthz/ready`), inside its pod.
pub const READY_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15021);

/// How to run one ztunnel.
#[derive(Debug, Clone)]
pub struct ZtunnelSpec {
    pub bin: PathBuf,
    /// The pod's network namespace (`/run/netns/...`).
    pub netns: PathBuf,
    pub pod: String,
    pub namespace: String,
    pub service_account: String,
    pub node: String,
    pub pod_ip: IpAddr,
    /// XDS_ADDRESS and CA_ADDRESS (`https://...:15012`).
    pub control: String,
    /// The mesh CA's root certificate (trust for xDS and CA).
    pub root_cert: PathBuf,
    /// Tokio workers (ZTUNNEL_WORKER_THREADS; ztunnel's default is 2).
    pub worker_threads: usize,
    /// Serve SOCKS5 on [`SOCKS5_ADDR`] (UNSTABLE_ENABLE_SOCKS5).
    pub socks5: bool,
    /// RUST_LOG (`info` logs an access line per connection, ztunnel's default).
    pub log_level: String,
    pub log: PathBuf,
}

impl ZtunnelSpec {
    /// ztunnel for `pod` of cluster `c` (its node, IP, service account =
    /// pod name, namespace), SOCKS5 on, one worker.
    pub fn for_pod(bin: &Path, c: &Cluster, pod: &str) -> Self {
        let p = c.pod(pod);
        let node = c
            .placement
            .get(pod)
            .map(|(node, _)| node.clone())
            .unwrap_or_default();
        Self {
            bin: bin.to_path_buf(),
            netns: p.netns.path(),
            pod: pod.to_string(),
            namespace: c.namespace_of(pod).to_string(),
            service_account: pod.to_string(),
            node,
            pod_ip: p.ip.into(),
            control: format!("https://{CONTROL_IP}:15012"),
            root_cert: c.ca_dir().join("root-cert.pem"),
            worker_threads: 1,
            socks5: true,
            log_level: "info".into(),
            log: std::env::temp_dir().join(format!("{}-ztunnel-{pod}.log", c.prefix)),
        }
    }

    /// The command: `nsenter` execs ztunnel in place, so the child's pid
    /// is ztunnel's.
    fn command(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .arg("--")
            .arg(&self.bin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("RUST_LOG", &self.log_level)
            .env("PROXY_MODE", "dedicated")
            .env(
                "PROXY_WORKLOAD_INFO",
                format!("{}/{}/{}", self.namespace, self.pod, self.service_account),
            )
            .env("XDS_ADDRESS", &self.control)
            .env("CA_ADDRESS", &self.control)
            .env("XDS_ROOT_CA", &self.root_cert)
            .env("CA_ROOT_CA", &self.root_cert)
            .env("NODE_NAME", &self.node)
            .env("POD_NAME", &self.pod)
            .env("POD_NAMESPACE", &self.namespace)
            .env("INSTANCE_IP", self.pod_ip.to_string())
            .env("SERVICE_ACCOUNT", &self.service_account)
            .env("CLUSTER_ID", "Kubernetes")
            .env("UNSTABLE_ENABLE_SOCKS5", self.socks5.to_string())
            .env("ZTUNNEL_WORKER_THREADS", self.worker_threads.to_string())
            // No iptables in the pod to route the application's answers to a
            // spoofed source back to ztunnel: connect from the pod's own address.
            .env("ENABLE_ORIG_SRC", "false");
        cmd
    }
}

/// A running ztunnel; killed when dropped.
pub struct Ztunnel {
    child: Child,
    pub spec: ZtunnelSpec,
}

impl Ztunnel {
    /// Starts ztunnel and waits (30 s) until it reports ready (xDS and its
    /// certificate received).
    pub fn start(spec: ZtunnelSpec) -> anyhow::Result<Self> {
        anyhow::ensure!(
            spec.bin.is_file(),
            "ztunnel binary {} is not a file",
            spec.bin.display()
        );
        let out = std::fs::File::create(&spec.log)
            .with_context(|| format!("ztunnel log {}", spec.log.display()))?;
        let child = spec
            .command()
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting ztunnel {}", spec.bin.display()))?;
        let mut z = Self { child, spec };
        let ready = try_eventually("ztunnel ready", Duration::from_secs(30), || {
            match z.child.try_wait() {
                Ok(Some(status)) => return Attempt::GiveUp(format!("ztunnel exited ({status})")),
                Err(e) => return Attempt::GiveUp(format!("ztunnel: {e}")),
                Ok(None) => {}
            }
            match crate::netns::http_get_in(&z.spec.netns, READY_ADDR, "/healthz/ready") {
                Ok(_) => Attempt::Done(()),
                Err(e) => Attempt::Pending(format!("/healthz/ready: {e:#}")),
            }
        });
        match ready {
            Ok(()) => Ok(z),
            Err(e) => {
                z.stop();
                anyhow::bail!("ztunnel in pod {}: {e}\n{}", z.spec.pod, z.log_tail())
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last 40 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn stop(&mut self) {
        crate::cmd::terminate(&mut self.child);
    }
}

impl Drop for Ztunnel {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.spec.log);
        }
    }
}
