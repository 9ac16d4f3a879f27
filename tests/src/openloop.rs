//! Open-loop 1-byte request/response load at a fixed offered rate, against
//! an echo server: `podctl rate`.
//!
//! Requests go out on a few connections on a fixed schedule, whatever the
//! answers do (a writer and a reader per connection; the echo keeps
//! order, so the k-th byte back answers the k-th request). Latency is
//! measured from each request's intended send time, so a stall delays the
//! following requests' figures too instead of hiding them (no coordinated
//! omission). Bounded by the request count (rate × seconds) and a read
//! deadline.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// One open-loop run.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub to: SocketAddr,
    /// Reach `to` through this SOCKS5 proxy.
    pub socks5: Option<SocketAddr>,
    /// Requests per second, over all connections.
    pub rate: u32,
    pub seconds: f64,
    pub connections: usize,
}

/// How long a reader waits for an answer before the run fails.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to `to`, directly or through a SOCKS5 proxy.
pub fn open(
    to: SocketAddr,
    socks5: Option<SocketAddr>,
    timeout: Duration,
) -> anyhow::Result<TcpStream> {
    let conn = match socks5 {
        Some(proxy) => crate::socks5::connect(proxy, to, timeout)?,
        None => TcpStream::connect_timeout(&to, timeout)?,
    };
    conn.set_nodelay(true)?;
    Ok(conn)
}

/// Runs the schedule; the JSON result carries `sent`, `received`,
/// `seconds`, `achieved_rate`, latency percentiles from the intended send
/// time (`p50_ns`, `p90_ns`, `p99_ns`, `max_ns`) and `late_sends` (writes
/// more than 1 ms behind schedule: the client itself could not keep up).
pub fn run(s: &Schedule) -> anyhow::Result<Value> {
    anyhow::ensure!(
        s.rate > 0 && s.connections > 0,
        "rate and connections must be > 0"
    );
    // Sleeps wake within microseconds, not the default 50 µs slack.
    let _ = nix::sys::prctl::set_timerslack(1_000);
    let total = (f64::from(s.rate) * s.seconds).round() as u64;
    let interval = Duration::from_secs_f64(s.connections as f64 / f64::from(s.rate));
    let mut conns = Vec::with_capacity(s.connections);
    for _ in 0..s.connections {
        let mut conn = open(s.to, s.socks5, Duration::from_secs(5))?;
        conn.set_read_timeout(Some(READ_TIMEOUT))?;
        // One round trip before the clock starts: tunnel set-up is not load.
        conn.write_all(b"w")?;
        conn.read_exact(&mut [0u8; 1])?;
        conns.push(conn);
    }
    let start = Instant::now() + Duration::from_millis(10);
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            // Connection i takes requests i, i + n, i + 2n, …
            let count = (total + (s.connections - 1 - i) as u64) / s.connections as u64;
            let first = start + Duration::from_secs_f64(i as f64 / f64::from(s.rate));
            std::thread::spawn(move || one_connection(conn, first, interval, count))
        })
        .collect();
    let mut samples = vec![];
    let mut sent = 0u64;
    let mut late = 0u64;
    for w in workers {
        let r = w
            .join()
            .map_err(|_| anyhow::anyhow!("open-loop worker panicked"))??;
        sent += r.sent;
        late += r.late;
        samples.extend(r.latencies);
    }
    let seconds = start.elapsed().as_secs_f64();
    samples.sort_unstable();
    let pct = |p: f64| percentile(&samples, p);
    Ok(json!({
        "offered_rate": s.rate,
        "sent": sent,
        "received": samples.len(),
        "seconds": seconds,
        "achieved_rate": samples.len() as f64 / seconds,
        "late_sends": late,
        "p50_ns": pct(0.50),
        "p90_ns": pct(0.90),
        "p99_ns": pct(0.99),
        "max_ns": samples.last(),
    }))
}

struct ConnResult {
    sent: u64,
    late: u64,
    latencies: Vec<u64>,
}

fn one_connection(
    conn: TcpStream,
    first: Instant,
    interval: Duration,
    count: u64,
) -> anyhow::Result<ConnResult> {
    let mut reader = conn.try_clone()?;
    let (tx, rx) = mpsc::channel::<Instant>();
    let read = std::thread::spawn(move || -> std::io::Result<Vec<u64>> {
        let mut latencies = Vec::with_capacity(count as usize);
        let mut buf = [0u8; 4096];
        while (latencies.len() as u64) < count {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let now = Instant::now();
            for _ in 0..n {
                let Ok(intended) = rx.recv() else { break };
                latencies.push((now - intended).as_nanos() as u64);
            }
        }
        Ok(latencies)
    });
    let mut writer = conn;
    let mut late = 0u64;
    let mut sent = 0u64;
    for k in 0..count {
        let intended = first + interval.mul_f64(k as f64);
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        } else if now - intended > Duration::from_millis(1) {
            late += 1;
        }
        // Queued before the write, so the reader always finds it.
        tx.send(intended)?;
        writer.write_all(&[k as u8])?;
        sent += 1;
    }
    let latencies = read
        .join()
        .map_err(|_| anyhow::anyhow!("open-loop reader panicked"))??;
    Ok(ConnResult {
        sent,
        late,
        latencies,
    })
}

/// The `p` quantile (0..=1) of `sorted` (ascending), nearest rank below;
/// `None` when there are no samples.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p) as usize)
        .copied()
}
