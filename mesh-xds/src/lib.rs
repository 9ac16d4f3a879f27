//! The small xDS client shared by the agent and the waypoint (issue 3, in progress).
