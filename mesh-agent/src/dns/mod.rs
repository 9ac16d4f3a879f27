//! DNS in the agent:
//! - resolve.rs: the resolver the outbound proxy uses for ServiceEntry
//!   endpoints known by name (`resolution: DNS`);
//! - server.rs: the DNS server pods' queries are redirected to (port
//!   15053 on the redirect address), deciding with answer.rs and
//!   forwarding with upstream.rs.
pub mod answer;
pub mod resolve;
pub mod server;
pub mod upstream;

#[cfg(test)]
pub(crate) mod tests;
