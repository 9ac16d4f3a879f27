//! `loadgen`: an HTTP load generator for `cargo xtask bench l7` and the
//! waypoint tests, on hyper's client connections.
//!
//! HTTP/1.1 keep-alive (one request in flight per connection) or h2c with
//! prior knowledge (`--h2`; `--concurrency` streams spread over
//! `--connections`). Closed loop by default (each worker sends its next
//! request as soon as the last one ends: maximum throughput), or open loop
//! with `--rate R`: request `k` is due at `start + k/R`, and its latency is
//! measured from that intended time, so a stalled server is charged for the
//! requests it delayed (no coordinated omission). A run always ends: at
//! `--requests` or after `--duration`, whichever comes first.
//!
//! Prints one JSON line: `{requests, errors, status, rps, p50_us, p90_us,
//! p99_us, max_us, …}`.
mod summary;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use clap::Parser;
use http_body_util::{BodyExt as _, Empty};
use hyper::{body::Bytes, Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{sync::mpsc, time::Instant};

use summary::{micros, Outcome, Summary};

#[derive(Parser, Debug, Clone)]
#[command(about = "HTTP/1.1 or h2c load generator; prints one JSON line")]
struct Cli {
    /// Target, `http://<ip>:<port>/<path>` (the address is connected to;
    /// a `--header host:…` replaces the authority sent).
    #[arg(long)]
    url: Uri,
    /// h2c with prior knowledge instead of HTTP/1.1.
    #[arg(long)]
    h2: bool,
    /// TCP connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight; HTTP/1.1 allows at most one per connection.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many requests.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Per-request timeout, in seconds (a timeout counts as an error).
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Extra request header `name:value`; repeatable.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Network namespace to enter first (a /run/netns path).
    #[arg(long)]
    netns: Option<PathBuf>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header `{s}` is not name:value"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("header `{s}` has an empty name"));
    }
    Ok((k.to_ascii_lowercase(), v.trim().to_string()))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(netns) = &cli.netns {
        // Before the runtime starts: every thread and socket is in the netns.
        let file =
            std::fs::File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {}", netns.display()))?;
    }
    let plan = Plan::from_cli(&cli)?;
    let summary = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?
        .block_on(run(plan))?;
    println!("{}", summary.to_json());
    Ok(())
}

/// The validated run: where to connect, what to send, when to stop.
#[derive(Debug, Clone)]
struct Plan {
    addr: SocketAddr,
    authority: String,
    path: String,
    h2: bool,
    connections: usize,
    concurrency: usize,
    rate: Option<f64>,
    requests: u64,
    duration: Duration,
    timeout: Duration,
    headers: Vec<(String, String)>,
}

impl Plan {
    fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        if cli.url.scheme_str() != Some("http") {
            bail!("--url {}: only http:// is supported", cli.url);
        }
        let auth = cli.url.authority().context("--url has no host:port")?;
        let addr: SocketAddr = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80))
            .parse()
            .with_context(|| format!("--url {}: host must be an IP address", cli.url))?;
        let authority = cli
            .headers
            .iter()
            .find(|(k, _)| k == "host")
            .map_or_else(|| auth.to_string(), |(_, v)| v.clone());
        let connections = cli.connections.max(1);
        let concurrency = cli.concurrency.unwrap_or(connections).max(1);
        if !cli.h2 && concurrency != connections {
            bail!(
                "--concurrency {concurrency} with HTTP/1.1 needs as many --connections \
                 (one request in flight per connection); got {connections}"
            );
        }
        if let Some(rate) = cli.rate {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate {rate}: must be a positive number of requests per second");
            }
        }
        if !(cli.duration.is_finite() && cli.duration > 0.0) {
            bail!("--duration {}: must be positive seconds", cli.duration);
        }
        Ok(Self {
            addr,
            authority,
            path: cli
                .url
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
            h2: cli.h2,
            connections,
            concurrency,
            rate: cli.rate,
            requests: cli.requests,
            duration: Duration::from_secs_f64(cli.duration),
            timeout: Duration::from_secs_f64(cli.timeout),
            headers: cli
                .headers
                .iter()
                .filter(|(k, _)| k != "host")
                .cloned()
                .collect(),
        })
    }

    fn request(&self) -> anyhow::Result<Request<Empty<Bytes>>> {
        let mut b = if self.h2 {
            // HTTP/2: the authority travels as :authority.
            Request::get(format!("http://{}{}", self.authority, self.path))
        } else {
            Request::get(self.path.as_str()).header(hyper::header::HOST, &self.authority)
        };
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        Ok(b.body(Empty::new())?)
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn send(&mut self, req: Request<Empty<Bytes>>) -> anyhow::Result<u16> {
        let resp = match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        // The whole body: HTTP/1.1 reuses the connection only after it.
        resp.into_body().collect().await?;
        Ok(status)
    }
}

async fn connect(plan: &Plan) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(plan.addr)
        .await
        .with_context(|| format!("connecting to {}", plan.addr))?;
    tcp.set_nodelay(true)?;
    let io = TokioIo::new(tcp);
    if plan.h2 {
        let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Ok(Sender::H2(s))
    } else {
        let (s, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        Ok(Sender::H1(s))
    }
}

/// Where a worker gets the time its next request is due.
enum Schedule {
    /// Closed loop: `next` numbers the requests; each is due when sent.
    Closed { next: AtomicU64, end: Instant },
    /// Open loop: the dispatcher thread hands out due times; nothing is
    /// sent after `end` (a server that fell behind leaves some unsent).
    Open {
        rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Instant>>,
        end: Instant,
    },
}

impl Schedule {
    /// The next request's due time, `None` when the run is over.
    async fn next(&self, requests: u64) -> Option<Instant> {
        match self {
            Schedule::Closed { next, end } => {
                let now = Instant::now();
                (next.fetch_add(1, Ordering::Relaxed) < requests && now < *end).then_some(now)
            }
            Schedule::Open { rx, end } => {
                let due = rx.lock().await.recv().await?;
                (Instant::now() < *end).then_some(due)
            }
        }
    }
}

/// Open loop: request `k` is due at `start + k/rate`. A plain thread with a
/// 1 ns timer slack wakes within microseconds of each due time (tokio's
/// timer has millisecond ticks, which would add up to 1 ms to every
/// latency). Due times pile up in the channel when every worker is busy:
/// their wait counts in their latency.
fn dispatch(start: Instant, rate: f64, requests: u64, duration: Duration) -> Schedule {
    let (tx, rx) = mpsc::unbounded_channel();
    let start_std = start.into_std();
    std::thread::spawn(move || {
        let _ = nix::sys::prctl::set_timerslack(1);
        for k in 0..requests {
            let offset = intended_offset(k, rate);
            if offset >= duration {
                break;
            }
            let due = start_std + offset;
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send(Instant::from_std(due)).is_err() {
                break;
            }
        }
    });
    Schedule::Open {
        rx: tokio::sync::Mutex::new(rx),
        end: start + duration,
    }
}

async fn run(plan: Plan) -> anyhow::Result<Summary> {
    let plan = Arc::new(plan);
    // HTTP/2: the workers share the connections round-robin (streams);
    // HTTP/1.1: a connection per worker.
    let mut h2_conns = Vec::new();
    if plan.h2 {
        for _ in 0..plan.connections {
            match connect(&plan).await? {
                Sender::H2(s) => h2_conns.push(s),
                Sender::H1(_) => unreachable!("h2 plan gave an HTTP/1.1 connection"),
            }
        }
    }
    let start = Instant::now();
    let schedule = Arc::new(match plan.rate {
        Some(rate) => dispatch(start, rate, plan.requests, plan.duration),
        None => Schedule::Closed {
            next: AtomicU64::new(0),
            end: start + plan.duration,
        },
    });
    let mut workers = Vec::with_capacity(plan.concurrency);
    for i in 0..plan.concurrency {
        let sender = h2_conns
            .get(i % plan.connections)
            .map(|s| Sender::H2(s.clone()));
        workers.push(tokio::spawn(worker(
            Arc::clone(&plan),
            Arc::clone(&schedule),
            sender,
        )));
    }
    let mut outcome = Outcome::default();
    for w in workers {
        outcome.merge(w.await?);
    }
    Ok(Summary::new(outcome, start.elapsed(), &plan))
}

async fn worker(plan: Arc<Plan>, schedule: Arc<Schedule>, mut sender: Option<Sender>) -> Outcome {
    let mut out = Outcome::default();
    // Latency is measured from when the request was due: in open loop its
    // intended send time, in closed loop the moment it is sent.
    while let Some(due) = schedule.next(plan.requests).await {
        if sender.is_none() {
            match connect(&plan).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    out.errors += 1;
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let req = match plan.request() {
            Ok(r) => r,
            Err(_) => {
                out.errors += 1;
                break;
            }
        };
        let s = sender.as_mut().expect("connected above");
        match tokio::time::timeout(plan.timeout, s.send(req)).await {
            Ok(Ok(status)) => {
                out.latencies_us.push(micros(due.elapsed()));
                *out.status.entry(status).or_default() += 1;
            }
            _ => {
                out.errors += 1;
                // HTTP/1.1: the connection's state is unknown, start over.
                // HTTP/2 streams fail alone; a dead connection fails `ready`
                // again and is replaced the same way.
                sender = None;
            }
        }
    }
    out
}

/// When request `k` (from 0) is due after the start, at `rate` per second.
fn intended_offset(k: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(k as f64 / rate)
}

#[cfg(test)]
mod tests;
