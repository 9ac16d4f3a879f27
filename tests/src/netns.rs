//! A network namespace guard, and connecting from inside one.
use std::{
    fs::File,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::cmd::ip;

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
        };
        ns.exec(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -n <name> <args>`.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
        connect_in(&self.path(), addr, timeout)
    }

    pub fn http_get(&self, addr: SocketAddr, path: &str) -> anyhow::Result<String> {
        http_get_in(&self.path(), addr, path)
    }
}

/// A TCP connection made from inside the namespace at `netns`. The socket
/// keeps the namespace it was created in, so the caller can use it anywhere.
pub fn connect_in(netns: &Path, addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let file = File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            TcpStream::connect_timeout(&addr, timeout)
        })
        .join()
        .expect("netns connect thread panicked")
    })
}

/// A minimal HTTP/1.0 GET from inside the namespace at `netns`; returns the body.
pub fn http_get_in(netns: &Path, addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    http_in(netns, addr, "GET", path)
}

/// A minimal HTTP/1.0 request (no body) from inside the namespace at
/// `netns`; returns the body of a 200 answer.
pub fn http_in(netns: &Path, addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut conn = connect_in(netns, addr, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        conn,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("malformed HTTP response from {addr}{path}"))?;
    anyhow::ensure!(
        head.contains(" 200 "),
        "{method} {path}: {}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_string())
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// A UDP socket bound to `addr` inside the namespace at `netns`; like
/// [`connect_in`], it keeps that namespace wherever it is used.
pub fn bind_udp_in(netns: &Path, addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let file = File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            std::net::UdpSocket::bind(addr)
        })
        .join()
        .expect("netns bind thread panicked")
    })
}
