//! What the agent knows and has done: for now, the connections it carried.
pub mod connections;
