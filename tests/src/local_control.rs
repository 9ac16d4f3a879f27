//! `mesh-control` as a plain process on loopback (no network namespace),
//! for tests that talk to it from the test process itself: the Kubernetes
//! source tests, whose fake API server runs in the test process. Ports are
//! picked free on 127.0.0.1; the process is killed on drop.
use std::{
    fs::OpenOptions,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};
use mesh_testkit::{try_eventually, Attempt};

/// `MESH_CONTROL_BIN`, else `mesh-control` in the target directory of the
/// running test (`target/debug/deps/<test>` → `target/debug/mesh-control`;
/// build it first: `cargo build -p mesh-control`).
pub fn control_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MESH_CONTROL_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    dir.join("mesh-control")
}

fn free_port() -> anyhow::Result<SocketAddr> {
    // Released before mesh-control binds it: a small race, tolerable for
    // tests (the start fails loudly if another process took it).
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A running `mesh-control`.
pub struct LocalControl {
    child: Child,
    /// Plaintext xDS + CA.
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    pub ready: SocketAddr,
    /// stdout and stderr of the process.
    pub log: PathBuf,
    /// The CA directory (`root-cert.pem`).
    pub ca_dir: PathBuf,
}

impl LocalControl {
    /// Starts `mesh-control` with `args` (the source flags) in `dir` (log
    /// and CA directory go there) and waits, at most `limit`, until it
    /// answers ready.
    pub fn start(dir: &Path, args: &[&str], limit: Duration) -> anyhow::Result<Self> {
        let bin = control_bin();
        anyhow::ensure!(
            bin.exists(),
            "mesh-control not found at {} — `cargo build -p mesh-control` or set MESH_CONTROL_BIN",
            bin.display()
        );
        let (xds, tls, admin, ready) = (free_port()?, free_port()?, free_port()?, free_port()?);
        let log = dir.join("mesh-control.log");
        let ca_dir = dir.join("ca");
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new(&bin)
            .arg("--ca-dir")
            .arg(&ca_dir)
            .args(["--xds-addr", &xds.to_string()])
            .args(["--xds-tls-addr", &tls.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--ready-addr", &ready.to_string()])
            .args(["--reload-interval", "200ms"])
            .args(["--log", "info"])
            .args(args)
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut control = LocalControl {
            child,
            xds,
            admin,
            ready,
            log,
            ca_dir,
        };
        let started = try_eventually("mesh-control ready", limit, || {
            match control.child.try_wait() {
                Ok(Some(status)) => {
                    return Attempt::GiveUp(format!("mesh-control exited ({status})"))
                }
                Err(e) => return Attempt::GiveUp(format!("mesh-control: {e}")),
                Ok(None) => {}
            }
            match http_get(ready, "/healthz/ready") {
                Ok(r) if r.starts_with("HTTP/1.1 200") => Attempt::Done(()),
                Ok(r) => Attempt::Pending(r.lines().next().unwrap_or_default().to_string()),
                Err(e) => Attempt::Pending(format!("{e:#}")),
            }
        });
        match started {
            Ok(()) => Ok(control),
            Err(e) => bail!("{e}:\n{}", control.tail()),
        }
    }

    /// The last 40 lines of the log.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Every WARN / ERROR line of the log except the per-stream ADS ones:
    /// what to print when a test fails.
    pub fn warnings(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| (l.contains(" WARN ") || l.contains(" ERROR ")) && !l.contains("::ads:"))
            .collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.xds)
    }
}

impl Drop for LocalControl {
    fn drop(&mut self) {
        crate::cmd::terminate(&mut self.child);
    }
}

/// One HTTP/1.1 GET; the whole answer (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}
