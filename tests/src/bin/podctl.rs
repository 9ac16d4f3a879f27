//! `podctl`: the workload that runs inside a test pod. It first joins the
//! pod's cgroup v2 leaf and network namespace (so its sockets are the pod's),
//! then serves or sends traffic and prints one JSON line per result.
//!
//! Every loop is bounded by a byte count, a request count or a deadline.
use std::{
    io::{BufWriter, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use mesh_e2e::openloop::{open, percentile};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Test workload for pod network namespaces.
#[derive(Parser)]
struct Cli {
    /// Network namespace to enter before anything else (a /run/netns path).
    #[arg(long)]
    netns: Option<PathBuf>,
    /// cgroup v2 directory to join before creating any socket.
    #[arg(long)]
    cgroup: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo server (everything read is written back) and sink server (reads
    /// to EOF, answers the byte count as 8 bytes). Prints `{"ready":…}`, then
    /// `{"accepted":peer,"port":…}` per connection.
    Serve {
        /// Listen address; the default `::` is dual-stack.
        #[arg(long, default_value = "::")]
        bind: String,
        #[arg(long)]
        echo_port: u16,
        #[arg(long)]
        sink_port: Option<u16>,
    },
    /// Sends `bytes` of seeded pseudo-random data to an echo server while
    /// reading the echo, half-closes, reads to EOF; reports both checksums.
    Echo {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        bytes: u64,
        /// Send this ASCII text repeated instead of random bytes (to look
        /// for it on the wire).
        #[arg(long)]
        pattern: Option<String>,
        /// Pause between 64 KiB chunks, to make a transfer last.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
    },
    /// One connection attempt; reports success or the error kind.
    Connect {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Connect, send a few bytes, read the echo: reports whether the
    /// exchange worked and, if not, where it failed (`connect`: refused
    /// locally, e.g. EPERM from a kernel DENY; `exchange`: accepted, then
    /// reset or closed, e.g. a proxy DENY).
    Probe {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Keeps one connection to an echo server, one round trip every 100 ms,
    /// until it breaks or `max_seconds` pass. Prints `{"connected":…}` once
    /// the first round trip worked, then `{"closed":…}` at the end.
    Hold {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 30)]
        max_seconds: u64,
    },
    /// 1-byte request/response over one connection: latency percentiles.
    Rr {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        count: u32,
        #[arg(long, default_value_t = 30)]
        max_seconds: u64,
        /// Reach `to` through this SOCKS5 proxy (e.g. ztunnel's
        /// 127.0.0.1:15080): one more round trip, to the proxy, at
        /// connection set-up only.
        #[arg(long)]
        socks5: Option<SocketAddr>,
    },
    /// New connection + one 1-byte round trip, `count` times: setup latency.
    ConnRr {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        count: u32,
        /// Reach `to` through this SOCKS5 proxy (e.g. ztunnel's
        /// 127.0.0.1:15080): one more round trip, to the proxy, at
        /// connection set-up only.
        #[arg(long)]
        socks5: Option<SocketAddr>,
    },
    /// Open loop: 1-byte requests at a fixed rate on a few connections,
    /// latency from each request's intended send time
    /// (mesh_e2e::openloop).
    Rate {
        #[arg(long)]
        to: SocketAddr,
        /// Requests per second, over all connections.
        #[arg(long)]
        rate: u32,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Reach `to` through this SOCKS5 proxy (e.g. ztunnel's
        /// 127.0.0.1:15080): one more round trip, to the proxy, at
        /// connection set-up only.
        #[arg(long)]
        socks5: Option<SocketAddr>,
    },
    /// A bounded batch of HTTP requests; prints a summary by status and
    /// by the version/pod named in each reply (mesh_e2e::httpc).
    Http {
        #[arg(long)]
        url: hyper::Uri,
        #[arg(long, default_value = "GET")]
        method: hyper::Method,
        /// `name:value`, repeatable.
        #[arg(long = "header")]
        headers: Vec<String>,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// h2c with prior knowledge instead of HTTP/1.1.
        #[arg(long)]
        h2: bool,
        #[arg(long, default_value_t = 20_000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
    },
    /// Bulk upload to a sink server: throughput.
    Stream {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        bytes: u64,
        /// Reach `to` through this SOCKS5 proxy (e.g. ztunnel's
        /// 127.0.0.1:15080): one more round trip, to the proxy, at
        /// connection set-up only.
        #[arg(long)]
        socks5: Option<SocketAddr>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(cgroup) = &cli.cgroup {
        std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string())?;
    }
    if let Some(netns) = &cli.netns {
        let file = std::fs::File::open(netns)?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
    }
    match cli.cmd {
        Cmd::Serve {
            bind,
            echo_port,
            sink_port,
        } => serve(&bind, echo_port, sink_port),
        Cmd::Echo {
            to,
            bytes,
            pattern,
            chunk_delay_ms,
        } => echo(
            to,
            bytes,
            pattern.as_deref(),
            Duration::from_millis(chunk_delay_ms),
        ),
        Cmd::Connect { to, timeout_ms } => connect(to, timeout_ms),
        Cmd::Probe { to, timeout_ms } => probe(to, Duration::from_millis(timeout_ms)),
        Cmd::Hold { to, max_seconds } => hold(to, Duration::from_secs(max_seconds)),
        Cmd::Rr {
            to,
            count,
            max_seconds,
            socks5,
        } => rr(to, socks5, count, max_seconds),
        Cmd::Stream { to, bytes, socks5 } => stream(to, socks5, bytes),
        Cmd::ConnRr { to, count, socks5 } => conn_rr(to, socks5, count),
        Cmd::Rate {
            to,
            rate,
            seconds,
            connections,
            socks5,
        } => {
            println_json(mesh_e2e::openloop::run(&mesh_e2e::openloop::Schedule {
                to,
                socks5,
                rate,
                seconds,
                connections,
            })?);
            Ok(())
        }
        Cmd::Http {
            url,
            method,
            headers,
            count,
            concurrency,
            h2,
            timeout_ms,
            max_seconds,
        } => {
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .ok_or_else(|| anyhow::anyhow!("--header {h:?}: want name:value"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let summary = mesh_e2e::httpc::run(mesh_e2e::httpc::Batch {
                url,
                method,
                headers,
                count,
                concurrency,
                h2,
                timeout: Duration::from_millis(timeout_ms),
                max_time: Duration::from_secs(max_seconds),
            })?;
            println_json(summary.to_json());
            Ok(())
        }
    }
}

fn println_json(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn serve(bind: &str, echo_port: u16, sink_port: Option<u16>) -> anyhow::Result<()> {
    let echo = TcpListener::bind((bind, echo_port))?;
    let sink = sink_port
        .map(|p| TcpListener::bind((bind, p)))
        .transpose()?;
    if let Some(sink) = sink {
        std::thread::spawn(move || accept_loop(sink, handle_sink));
    }
    println_json(json!({"ready": true, "echo_port": echo_port, "sink_port": sink_port}));
    accept_loop(echo, handle_echo);
    Ok(())
}

fn accept_loop(listener: TcpListener, handler: fn(TcpStream)) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        // Canonical form: an IPv4 peer on the dual-stack socket prints as IPv4.
        let peer = conn
            .peer_addr()
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()).to_string())
            .unwrap_or_default();
        println_json(json!({"accepted": peer, "port": port}));
        let _ = conn.set_nodelay(true);
        std::thread::spawn(move || handler(conn));
    }
}

fn handle_echo(mut conn: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = conn.shutdown(Shutdown::Write);
}

fn handle_sink(mut conn: TcpStream) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let _ = conn.write_all(&total.to_be_bytes());
}

/// Deterministic bytes (xorshift), so both ends could regenerate them.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn echo(to: SocketAddr, bytes: u64, pattern: Option<&str>, pause: Duration) -> anyhow::Result<()> {
    let conn = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    let local = conn.local_addr()?;
    conn.set_read_timeout(Some(Duration::from_secs(30) + pause * 64))?;
    let mut reader = conn.try_clone()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, String)> {
        let mut hash = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            total += n as u64;
        }
        Ok((total, format!("{:x}", hash.finalize())))
    });
    let mut writer = BufWriter::new(&conn);
    let mut hash = Sha256::new();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        match pattern {
            Some(p) if !p.is_empty() => {
                let offset = (bytes - left) as usize;
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = p.as_bytes()[(offset + i) % p.len()];
                }
            }
            _ => fill(&mut buf[..n], &mut state),
        }
        writer.write_all(&buf[..n])?;
        hash.update(&buf[..n]);
        left -= n as u64;
        if !pause.is_zero() {
            writer.flush()?;
            std::thread::sleep(pause);
        }
    }
    writer.flush()?;
    drop(writer);
    conn.shutdown(Shutdown::Write)?;
    let (received, received_sha) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    println_json(json!({
        "local": local.to_string(),
        "sent": bytes,
        "sent_sha256": format!("{:x}", hash.finalize()),
        "received": received,
        "received_sha256": received_sha,
    }));
    Ok(())
}

fn connect(to: SocketAddr, timeout_ms: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    let result = TcpStream::connect_timeout(&to, Duration::from_millis(timeout_ms));
    let elapsed_us = start.elapsed().as_micros() as u64;
    match result {
        Ok(conn) => println_json(json!({
            "ok": true, "local": conn.local_addr()?.to_string(), "elapsed_us": elapsed_us
        })),
        Err(e) => println_json(json!({
            "ok": false, "error_kind": format!("{:?}", e.kind()), "error": e.to_string(),
            "elapsed_us": elapsed_us
        })),
    }
    Ok(())
}

fn probe(to: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let fail = |stage: &str, e: std::io::Error| {
        println_json(json!({
            "ok": false, "stage": stage, "error_kind": format!("{:?}", e.kind()),
            "error": e.to_string(),
        }))
    };
    let mut conn = match TcpStream::connect_timeout(&to, timeout) {
        Ok(conn) => conn,
        Err(e) => {
            fail("connect", e);
            return Ok(());
        }
    };
    conn.set_read_timeout(Some(timeout))?;
    let msg = b"probe-1234";
    let mut back = [0u8; 10];
    let exchanged = conn
        .write_all(msg)
        .and_then(|()| conn.read_exact(&mut back));
    match exchanged {
        Ok(()) if &back == msg => println_json(json!({"ok": true})),
        Ok(()) => println_json(json!({"ok": false, "stage": "exchange", "error": "echo differs"})),
        Err(e) => fail("exchange", e),
    }
    Ok(())
}

fn hold(to: SocketAddr, max: Duration) -> anyhow::Result<()> {
    let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let start = Instant::now();
    let mut round_trips = 0u64;
    let mut byte = [0u8; 1];
    let error = loop {
        if start.elapsed() > max {
            break "still open at the deadline".to_string();
        }
        let r = conn
            .write_all(b"h")
            .and_then(|()| conn.read_exact(&mut byte));
        if let Err(e) = r {
            break format!("{:?}: {e}", e.kind());
        }
        round_trips += 1;
        if round_trips == 1 {
            println_json(json!({"connected": true, "local": conn.local_addr()?.to_string()}));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println_json(json!({
        "closed": true, "round_trips": round_trips, "error": error,
        "after_ms": start.elapsed().as_millis() as u64,
    }));
    Ok(())
}

fn rr(
    to: SocketAddr,
    socks5: Option<SocketAddr>,
    count: u32,
    max_seconds: u64,
) -> anyhow::Result<()> {
    let mut conn = open(to, socks5, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let deadline = Instant::now() + Duration::from_secs(max_seconds);
    let mut samples = Vec::with_capacity(count as usize);
    let mut byte = [0u8; 1];
    // Warm-up round trips are not recorded.
    for i in 0..count + 100 {
        if Instant::now() > deadline {
            break;
        }
        let start = Instant::now();
        conn.write_all(&[i as u8])?;
        conn.read_exact(&mut byte)?;
        if i >= 100 {
            samples.push(start.elapsed().as_nanos() as u64);
        }
    }
    samples.sort_unstable();
    let pct = |p: f64| percentile(&samples, p);
    println_json(json!({
        "count": samples.len(),
        "p50_ns": pct(0.50),
        "p90_ns": pct(0.90),
        "p99_ns": pct(0.99),
    }));
    Ok(())
}

fn conn_rr(to: SocketAddr, socks5: Option<SocketAddr>, count: u32) -> anyhow::Result<()> {
    let mut samples = Vec::with_capacity(count as usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..count {
        if Instant::now() > deadline {
            break;
        }
        let start = Instant::now();
        let mut conn = open(to, socks5, Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        conn.write_all(&[i as u8])?;
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte)?;
        samples.push(start.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let pct = |p: f64| percentile(&samples, p);
    println_json(json!({"count": samples.len(), "p50_ns": pct(0.5), "p99_ns": pct(0.99)}));
    Ok(())
}

fn stream(to: SocketAddr, socks5: Option<SocketAddr>, bytes: u64) -> anyhow::Result<()> {
    let mut conn = open(to, socks5, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let buf = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        conn.write_all(&buf[..n])?;
        left -= n as u64;
    }
    conn.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    conn.read_exact(&mut count)?;
    let secs = start.elapsed().as_secs_f64();
    let acked = u64::from_be_bytes(count);
    println_json(json!({
        "bytes": acked,
        "seconds": secs,
        "gbit_per_s": acked as f64 * 8.0 / secs / 1e9,
    }));
    Ok(())
}
