//! The `kernel_conn_events` ring buffer: fast-path connections opened and
//! closed, as sock_ops reports them (outbound/kernel_carried.rs accounts
//! for them).
use std::io;

use aya::maps::{MapData, RingBuf};
use mesh_common::{ConnTuple, KernelConnEvent, SockAddr};
use tokio::io::{unix::AsyncFd, Interest};

use super::{maps, pins::PinLayout};

pub struct KernelEvents {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl KernelEvents {
    pub fn open(layout: &PinLayout) -> anyhow::Result<Self> {
        let ring = maps::kernel_conn_events(layout)?;
        // SAFETY: the ring buffer owns its map descriptor; the AsyncFd takes
        // ownership of it, so the fd stays open and unchanged for as long as
        // it is registered.
        #[allow(unsafe_code)]
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
        Ok(Self { ring })
    }

    /// Waits for events and returns those there are (possibly none).
    pub async fn next_batch(&mut self) -> io::Result<Vec<KernelConnEvent>> {
        let mut guard = self.ring.readable_mut().await?;
        let mut batch = Vec::new();
        while let Some(item) = guard.get_inner_mut().next() {
            match decode(&item) {
                Some(event) => batch.push(event),
                None => tracing::debug!(len = item.len(), "short fast-path event"),
            }
        }
        guard.clear_ready();
        Ok(batch)
    }
}

/// A [`KernelConnEvent`] from the ring buffer's bytes (its `repr(C)`
/// layout, native byte order); `None` if too short.
pub fn decode(bytes: &[u8]) -> Option<KernelConnEvent> {
    let u32_at = |at: usize| Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    // SockAddr: addr[16], port u16, family u16, pad u32 (24 bytes).
    let addr_at = |at: usize| -> Option<SockAddr> {
        Some(SockAddr {
            addr: bytes.get(at..at + 16)?.try_into().ok()?,
            port: u16::from_ne_bytes(bytes.get(at + 16..at + 18)?.try_into().ok()?),
            family: 0,
            _pad: 0,
        })
    };
    Some(KernelConnEvent {
        kind: u32_at(0)?,
        old_state: u32_at(4)?,
        unacked: u32_at(80)?,
        _pad: 0,
        netns_cookie: u64_at(8)?,
        tuple: ConnTuple {
            src: addr_at(16)?,
            dst: addr_at(40)?,
        },
        bytes_acked: u64_at(64)?,
        bytes_received: u64_at(72)?,
    })
}

/// TCP states (include/net/tcp_states.h) a socket may leave for TCP_CLOSE.
const TCP_FIN_WAIT1: u32 = 4;
const TCP_FIN_WAIT2: u32 = 5;
const TCP_CLOSE_WAIT: u32 = 8;
const TCP_LAST_ACK: u32 = 9;
const TCP_CLOSING: u32 = 11;

/// Application bytes (sent, received) of a closed fast-path connection:
/// the kernel's counters less the sequence numbers that carry no data,
/// i.e. the SYN, the client's FIN once acknowledged and the server's FIN
/// once received. Which FINs happened follows from the state the socket
/// closed from: FIN_WAIT1/2, CLOSING and LAST_ACK sent one; CLOSE_WAIT,
/// LAST_ACK, CLOSING and the FIN_WAIT states (closing into TIME_WAIT on
/// the server's FIN) received one; from ESTABLISHED it was reset.
pub fn data_bytes(event: &KernelConnEvent) -> (u64, u64) {
    let state = event.old_state;
    let fin_sent = matches!(
        state,
        TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSING | TCP_LAST_ACK
    );
    let fin_received = matches!(
        state,
        TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING | TCP_FIN_WAIT1 | TCP_FIN_WAIT2
    );
    let fin_acked = fin_sent && event.unacked == 0;
    let sent = event
        .bytes_acked
        .saturating_sub(1)
        .saturating_sub(u64::from(fin_acked));
    let received = event.bytes_received.saturating_sub(u64::from(fin_received));
    (sent, received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<KernelConnEvent>(), 88);
        let mut bytes = vec![0u8; 88];
        bytes[4..8].copy_from_slice(&TCP_LAST_ACK.to_ne_bytes());
        bytes[80..84].copy_from_slice(&3u32.to_ne_bytes());
        bytes[0..4].copy_from_slice(&mesh_common::KERNEL_CONN_CLOSED.to_ne_bytes());
        bytes[8..16].copy_from_slice(&42u64.to_ne_bytes());
        bytes[16 + 10..16 + 16].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 1]);
        bytes[32..34].copy_from_slice(&40000u16.to_ne_bytes());
        bytes[40 + 10..40 + 16].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 2]);
        bytes[56..58].copy_from_slice(&80u16.to_ne_bytes());
        bytes[64..72].copy_from_slice(&1000u64.to_ne_bytes());
        bytes[72..80].copy_from_slice(&7u64.to_ne_bytes());
        let event = decode(&bytes).unwrap();
        assert_eq!(event.kind, mesh_common::KERNEL_CONN_CLOSED);
        assert_eq!(event.netns_cookie, 42);
        assert_eq!(event.tuple.src.addr[10..], [0xff, 0xff, 10, 0, 0, 1]);
        assert_eq!(event.tuple.src.port, 40000);
        assert_eq!(event.tuple.dst.addr[10..], [0xff, 0xff, 10, 0, 0, 2]);
        assert_eq!(event.tuple.dst.port, 80);
        assert_eq!((event.bytes_acked, event.bytes_received), (1000, 7));
        assert_eq!((event.old_state, event.unacked), (TCP_LAST_ACK, 3));
        assert!(decode(&bytes[..83]).is_none(), "cut inside `unacked`");
    }

    fn closed(
        old_state: u32,
        bytes_acked: u64,
        bytes_received: u64,
        unacked: u32,
    ) -> KernelConnEvent {
        KernelConnEvent {
            kind: mesh_common::KERNEL_CONN_CLOSED,
            old_state,
            bytes_acked,
            bytes_received,
            unacked,
            ..KernelConnEvent::default()
        }
    }

    #[test]
    fn data_bytes_leave_out_the_syn_and_the_fins_that_happened() {
        // Client closed first; both FINs exchanged (FIN_WAIT2 -> TIME_WAIT).
        assert_eq!(data_bytes(&closed(TCP_FIN_WAIT2, 102, 51, 0)), (100, 50));
        // Server closed first; the client's FIN acknowledged in LAST_ACK.
        assert_eq!(data_bytes(&closed(TCP_LAST_ACK, 102, 51, 0)), (100, 50));
        // Reset while established: no FIN either way.
        assert_eq!(data_bytes(&closed(1, 101, 50, 0)), (100, 50));
        // Reset after the server's FIN, before the client's.
        assert_eq!(data_bytes(&closed(TCP_CLOSE_WAIT, 101, 51, 0)), (100, 50));
        // The client's FIN sent but not acknowledged when it closed.
        assert_eq!(data_bytes(&closed(TCP_FIN_WAIT1, 101, 51, 1)), (100, 50));
        // Never below zero.
        assert_eq!(data_bytes(&closed(TCP_LAST_ACK, 0, 0, 0)), (0, 0));
    }
}
