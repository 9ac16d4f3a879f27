//! Telling the agent's own sockets from everyone else's. `SO_MARK` alone
//! proves nothing: any process with `NET_ADMIN` (a pod granted it) can set
//! the agent's mark. A socket is the agent's only when it also lives in the
//! agent's network namespace and was made by a task of the agent's cgroup,
//! neither of which a pod can join.
use mesh_common::AgentIdentity;

use crate::maps::{AGENT_IDENTITY, CAPTURE_CONFIG};

/// The agent's identity, if the agent wrote it.
#[inline(always)]
pub fn identity() -> Option<AgentIdentity> {
    AGENT_IDENTITY
        .get(0)
        .copied()
        .filter(|id| id.netns_cookie != 0)
}

/// True when a socket with `mark`, in netns `netns`, made by a task of
/// cgroup `cgroup_id`, is the agent's.
#[inline(always)]
pub fn is_agent_socket(mark: u32, netns: u64, cgroup_id: u64) -> bool {
    let Some(config) = CAPTURE_CONFIG.get(0) else {
        return false;
    };
    let Some(id) = identity() else {
        return false;
    };
    config.agent_mark != 0
        && mark == config.agent_mark
        && netns == id.netns_cookie
        && cgroup_id == id.cgroup_id
}
