//! `meshctl port-forward` against a real pod: a network namespace this
//! test creates (removed on drop, also on failure) with a TCP server on
//! its loopback, reached from the root namespace through the real binary.
//! Needs root (`ip netns add`, entering the namespace).
use std::{
    io::{BufRead as _, Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const MESHCTL: &str = env!("CARGO_BIN_EXE_meshctl");
const WAIT: Duration = Duration::from_secs(15);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "port-forward tests need root (network namespaces): run as root"
    );
}

/// A named network namespace with loopback up; deleted on drop.
struct Pod {
    name: String,
}

impl Pod {
    fn create(tag: &str) -> Pod {
        let name = format!("mpf{}{tag}", std::process::id());
        let pod = Pod { name };
        ip(&["netns", "add", &pod.name]);
        ip(&["-n", &pod.name, "link", "set", "lo", "up"]);
        pod
    }

    /// A server on the pod's 127.0.0.1: each connection gets
    /// `<peer ip> got <everything it sent>` after it half-closes, then
    /// the server closes. Returns the port.
    fn serve(&self) -> u16 {
        let path = format!("/run/netns/{}", self.name);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                std::thread::spawn(move || {
                    let mut got = vec![];
                    stream.read_to_end(&mut got).unwrap();
                    let peer = stream.peer_addr().unwrap().ip();
                    let answer = format!("{peer} got {}", String::from_utf8_lossy(&got));
                    stream.write_all(answer.as_bytes()).unwrap();
                });
            }
        });
        rx.recv_timeout(WAIT).unwrap()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?}: {status}");
}

/// A running `meshctl port-forward`; killed on drop.
struct Forward {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Forward {
    fn start(args: &[&str]) -> Forward {
        let mut child = Command::new(MESHCTL)
            .arg("port-forward")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let _ = tx.send(line.unwrap_or_default());
            }
        });
        Forward { child, lines }
    }

    fn line(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("a Forwarding line")
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `meshctl port-forward <args>`, which must fail within [`WAIT`].
fn failing(args: &[&str]) -> (Output, String) {
    let mut child = Command::new(MESHCTL)
        .arg("port-forward")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > WAIT {
            let _ = child.kill();
            panic!("meshctl port-forward {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// Sends `text`, half-closes, reads the answer to EOF.
fn exchange(addr: &str, text: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_root_namespace_reaches_a_pods_loopback_port() {
    require_root();
    let pod = Pod::create("a");
    let port = pod.serve();
    let spec = format!(":{port}");
    let forward = Forward::start(&[&format!("pod/{}", pod.name), &spec]);
    let line = forward.line();
    let local = line
        .strip_prefix("Forwarding from ")
        .and_then(|rest| rest.strip_suffix(&format!(" -> {port}")))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(local.starts_with("127.0.0.1:"), "{line}");
    // The server is on the pod's loopback, so the peer it sees is too;
    // the answer comes after the client's half-close.
    assert_eq!(exchange(local, "hello"), "127.0.0.1 got hello");
    let big = "x".repeat(256 * 1024);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (local, big) = (local.to_string(), big.clone());
            std::thread::spawn(move || exchange(&local, &big))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), format!("127.0.0.1 got {big}"));
    }
}

#[test]
fn a_missing_pod_or_port_is_a_clear_error() {
    require_root();
    let gone = format!("mpf{}gone", std::process::id());
    let (_, stderr) = failing(&[&gone, "18080:80"]);
    assert!(
        stderr.contains(&format!(
            "pod {gone}: there is no network namespace /run/netns/{gone}"
        )),
        "{stderr}"
    );

    let pod = Pod::create("b");
    // A port nothing in the pod listens on.
    let (_, stderr) = failing(&[&pod.name, "18080:1"]);
    assert!(
        stderr.contains(&format!(
            "pod {}: nothing accepts connections on port 1",
            pod.name
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");

    // A local port that is taken.
    let port = pod.serve();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let local = taken.local_addr().unwrap();
    let (_, stderr) = failing(&[&pod.name, &format!("{}:{port}", local.port())]);
    assert!(
        stderr.contains(&format!("cannot listen on {local} (the port is in use")),
        "{stderr}"
    );

    // A non-loopback address without the flag.
    let (_, stderr) = failing(&[&pod.name, &format!(":{port}"), "--address", "0.0.0.0"]);
    assert!(stderr.contains("--allow-non-loopback"), "{stderr}");
}
