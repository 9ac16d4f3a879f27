//! Kernel half of the mesh: capture pod TCP (and UDP DNS) without iptables
//! or sidecars.
//!
//! Data path hop ① (see ARCHITECTURE.md):
//! - [`connect`]: `cgroup/connect4` and `cgroup/connect6` rewrite the
//!   destination of enrolled pods' TCP `connect()` to the node agent's
//!   outbound listener and store the original destination on the socket;
//! - [`sockops`]: once the redirected connection is established, moves the
//!   original destination to a map keyed by the connection's address tuple,
//!   where the agent finds it for the socket it accepted;
//! - [`inbound`]: `cgroup_skb/ingress` drops plaintext connection attempts
//!   to pods under PeerAuthentication STRICT (hop ④, in the kernel);
//! - [`dns`]: `cgroup/sendmsg4`, `cgroup/recvmsg4`, `cgroup/getpeername4`
//!   (and the UDP case of `connect4`) send enrolled pods' UDP DNS to the
//!   agent's DNS proxy and hand the answers back as the resolver's;
//! - [`agent`]: which sockets are the agent's own (mark, netns and cgroup).
//!
//! Maps live in [`maps`]; their key and value types in `mesh-common`.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

mod addr;
mod agent;
mod connect;
mod dns;
mod inbound;
mod maps;
mod sockops;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
