//! One `tcp_proxy` connection of the gateway: dial the target's cluster,
//! relay the bytes, report the connection to telemetry (opened once the
//! upstream is chosen, its bytes while it is open, closed with its
//! response flag, and the access log line).
use std::sync::Arc;

use mesh_hbone::{Counted, End, LiveBytes};
use tokio::io::{AsyncRead, AsyncWrite};

use super::tcp::{self, RelayEnd, TcpTarget, TcpUpstreams};
use crate::telemetry::tcp::{TcpObserver, TcpRecord};

/// Envoy's response flag for a stream closed by its idle timeout.
const IDLE_TIMEOUT_FLAG: &str = "SI";

/// What `tcp_proxy` chains share: the endpoints and telemetry.
#[derive(Clone)]
pub struct TcpContext {
    pub upstreams: Arc<TcpUpstreams>,
    pub telemetry: Option<Arc<TcpObserver>>,
}

/// Relays `io` to an endpoint of the target's cluster; a connection the
/// upstream refuses is closed. `record` holds the downstream facts
/// (address, SNI, client principal).
pub async fn proxy<D>(io: D, target: &TcpTarget, ctx: &TcpContext, mut record: TcpRecord)
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let started = std::time::Instant::now();
    let connected = match ctx.upstreams.connect(target).await {
        Ok(c) => c,
        Err(failure) => {
            tracing::debug!(
                peer = ?record.downstream,
                stat_prefix = %target.stat_prefix,
                cluster = %failure.cluster,
                flag = failure.error.flag(),
                error = %failure.error,
                "tcp_proxy: no upstream connection"
            );
            record.cluster = Some(failure.cluster);
            record.service = failure.service;
            record.flag = Some(failure.error.flag());
            record.duration = started.elapsed();
            if let Some(t) = &ctx.telemetry {
                let open = t.opened(&record, Arc::default());
                t.closed(&record, open);
            }
            return;
        }
    };
    record.cluster = Some(connected.cluster.clone());
    record.service = connected.service.clone();
    record.workload = connected.workload.clone();
    record.upstream_host = Some(connected.endpoint);
    record.upstream_mtls = connected.hbone;
    // The relay counts the downstream's bytes as they move: a scrape reads
    // them while the connection is open.
    let live = Arc::new(LiveBytes::default());
    let open = ctx
        .telemetry
        .as_ref()
        .map(|t| t.opened(&record, Arc::clone(&live)));
    let io = Counted::new(io, End::Source, live);
    let relayed = tcp::relay(io, connected.io, tcp::IDLE_TIMEOUT).await;
    record.duration = started.elapsed();
    record.received = relayed.from_downstream;
    record.sent = relayed.from_upstream;
    if matches!(relayed.end, RelayEnd::Idle) {
        record.flag = Some(IDLE_TIMEOUT_FLAG);
    }
    tracing::debug!(
        peer = ?record.downstream,
        cluster = %connected.cluster,
        endpoint = %connected.endpoint,
        duration_ms = record.duration.as_millis() as u64,
        received = record.received,
        sent = record.sent,
        end = ?relayed.end,
        "tcp_proxy connection finished"
    );
    if let (Some(t), Some(open)) = (&ctx.telemetry, open) {
        t.closed(&record, open);
    }
}
