//! Hop ② in this plaintext form: the outbound listener (port 15001)
//! accepts connections the kernel redirected, recovers where the pod meant to
//! go, and proxies to it.
pub mod listener;
pub mod proxy;
pub mod relay;
