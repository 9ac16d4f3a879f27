//! Socket tricks std cannot express (`SO_MARK` before `connect()`, IPv6
//! extension headers on a SYN, a burst of half-opened connections), done by
//! a short Python script run inside a pod: its network namespace through
//! `nsenter`, its cgroup joined by the script before any socket exists.
use std::process::Command;

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::topology::Pod;

/// Prepended to every script: join the cgroup in `argv[1]` (the pod's, so
/// the cgroup hooks see the sockets as the pod's), then print results as
/// JSON with `out(...)`.
const PRELUDE: &str = r#"
import json, os, socket, sys, errno
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
def out(**kw):
    print(json.dumps(kw), flush=True)
"#;

/// Runs `script` in `pod` with `args` as `sys.argv[2..]`; returns its last
/// JSON line.
pub fn run(pod: &Pod, script: &str, args: &[&str]) -> anyhow::Result<Value> {
    let program = format!("{PRELUDE}\n{script}");
    let out = Command::new("nsenter")
        .arg(format!("--net={}", pod.netns.path().display()))
        .args(["--", "python3", "-c", &program])
        .arg(&pod.cgroup.path)
        .args(args)
        .output()
        .context("running python3 in a pod (is python3 installed?)")?;
    if !out.status.success() {
        bail!(
            "python in pod {} failed: {}",
            pod.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the script printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

/// One TCP connection attempt to `to` from `pod`, with `SO_MARK` set to
/// `mark` first. `{"ok": true}` or `{"ok": false, "errno": …}`.
pub fn connect_marked(pod: &Pod, to: std::net::SocketAddr, mark: u32) -> anyhow::Result<Value> {
    const SCRIPT: &str = r#"
host, port, mark = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
s.settimeout(3)
try:
    s.connect((host, port))
    s.sendall(b"marked")
    out(ok=True, echo=s.recv(6).decode())
except OSError as e:
    out(ok=False, errno=e.errno or 0, error=str(e))
"#;
    let (host, port, mark) = (to.ip().to_string(), to.port().to_string(), mark.to_string());
    run(pod, SCRIPT, &[&host, &port, &mark])
}

/// One IPv6 TCP connection attempt to `to` from `pod` whose packets carry
/// an 8-byte extension header of kind `option` (`IPV6_HOPOPTS` or
/// `IPV6_DSTOPTS`: a header holding only padding). `{"ok": …}` as above.
pub fn connect_with_ipv6_ext_header(
    pod: &Pod,
    to: std::net::SocketAddr,
    option: &str,
) -> anyhow::Result<Value> {
    const SCRIPT: &str = r#"
host, port, option = sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
# next header (the kernel fills it), length 0 (8 bytes), PadN of 4 bytes.
s.setsockopt(socket.IPPROTO_IPV6, getattr(socket, option), bytes([0, 0, 1, 4, 0, 0, 0, 0]))
s.settimeout(3)
try:
    s.connect((host, port))
    out(ok=True)
except OSError as e:
    out(ok=False, errno=e.errno or 0, error=str(e))
"#;
    let (host, port) = (to.ip().to_string(), to.port().to_string());
    run(pod, SCRIPT, &[&host, &port, option])
}

/// `count` non-blocking `connect()`s to `to` from `pod`, each socket closed
/// before the handshake can finish: the connections are captured (the
/// kernel records an original destination) and never established.
pub fn half_open_burst(pod: &Pod, to: std::net::SocketAddr, count: u32) -> anyhow::Result<Value> {
    const SCRIPT: &str = r#"
host, port, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
started = 0
for _ in range(count):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    if s.connect_ex((host, port)) in (0, errno.EINPROGRESS):
        started += 1
    s.close()
out(started=started)
"#;
    let (host, port, count) = (
        to.ip().to_string(),
        to.port().to_string(),
        count.to_string(),
    );
    run(pod, SCRIPT, &[&host, &port, &count])
}
