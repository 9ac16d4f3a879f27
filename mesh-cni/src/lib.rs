//! `mesh-cni`: the chained CNI plugin of the mesh (CNI spec 1.0) and the
//! wire types of the node agent's CNI API.
//!
//! The plugin runs last in the node's conflist. On ADD it asks the node
//! agent, over a Unix socket, to enrol the pod's network namespace and only
//! returns (passing the previous plugin's result through unchanged) once the
//! agent has decided: a pod's containers start after the CNI ADD returns, so
//! no connection of an ambient pod can escape capture. When the agent cannot
//! be reached or cannot decide, ADD fails and the runtime retries (fail
//! closed). DEL tells the agent but always succeeds: the agent reconciles
//! what it missed on its next start.
#![forbid(unsafe_code)]

pub mod api;
pub mod args;
pub mod client;
pub mod config;
pub mod error;
pub mod install;
pub mod plugin;
