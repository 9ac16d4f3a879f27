//! What each pinned object of an agent instance is for, keyed by pin name
//! (names from `mesh_common::names`; meanings from `mesh-ebpf/src/*.rs`
//! and ARCHITECTURE.md, "Kernel objects"). A pin meshctl does not know is
//! still listed, explained as unknown.
use mesh_common::names;

/// A program: the hook it is attached to and what it does.
pub fn program(pin: &str) -> Option<(&'static str, &'static str)> {
    Some(match pin {
        names::PROG_CONNECT4 => (
            "cgroup/connect4",
            "connect() of enrolled pods (IPv4): refused (EPERM) if deny_connect forbids it, \
             whatever the socket's mark; else redirected to the agent's :15001, the original \
             destination kept on the socket",
        ),
        names::PROG_CONNECT6 => (
            "cgroup/connect6",
            "connect() of enrolled pods (IPv6): refused if deny_connect forbids it, else \
             redirected to the agent, original destination kept on the socket",
        ),
        names::PROG_SOCKOPS => (
            "sock_ops",
            "on connection establishment: moves the original destination from the socket to the \
             tuple map the agent reads on accept; records the agent's own connections to pods",
        ),
        names::PROG_INBOUND => (
            "cgroup_skb/ingress",
            "drops plaintext SYNs to STRICT (PeerAuthentication) pods unless they are the agent's \
             own connections, come from the pod itself or loopback, or reach a declared probe port",
        ),
        _ => return None,
    })
}

/// A map: what it holds.
pub fn map(pin: &str) -> Option<&'static str> {
    Some(match pin {
        names::MAP_ENROLLED => "network-namespace cookie → enrolment of the pod living in it",
        names::MAP_EXCLUDED => "(netns cookie, port) pairs a pod keeps off the mesh",
        names::MAP_ORIG_BY_SOCKET => {
            "per-socket storage: original destination, between connect() and establishment \
             (not countable: entries live on the sockets)"
        }
        names::MAP_ORIG_BY_TUPLE => {
            "connection tuple → original destination, taken by the agent on accept (LRU)"
        }
        names::MAP_CONFIG => "where captured connections go: agent address, port, socket mark",
        names::MAP_STATS => {
            "per-CPU counters: redirected, bypasses, map errors, plaintext denied, \
             connect() denied by policy"
        }
        names::MAP_STRICT => {
            "pods no plaintext client may reach (STRICT mTLS, or policies admitting no \
             identity-less source): plaintext SYNs to them are dropped"
        }
        names::MAP_AGENT_IDENTITY => {
            "the agent's netns cookie and cgroup id: only sockets with both (and the agent's mark) \
             are the agent's"
        }
        names::MAP_AGENT_CONNS => {
            "connection tuples the agent opened to pods, between connect() and establishment"
        }
        names::MAP_PROBE_PORTS => {
            "(pod address, port) pairs a STRICT pod takes plaintext on from the node address \
             (kubelet probes)"
        }
        names::MAP_DENY => {
            "(pod netns cookie, destination, port; 0 = any) an AuthorizationPolicy DENY \
             forbids: connect() fails with EPERM"
        }
        _ => return None,
    })
}
