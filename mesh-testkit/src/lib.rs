//! Test support shared by the workspace's tests.
//!
//! Every "until the system shows it" wait goes through one helper:
//! [`eventually`] (blocking), [`eventually_async`] (a closure returning a
//! future) and [`eventually_watch`] (woken by a `tokio::sync::watch`
//! channel instead of polling). The closure returns what it observed as a
//! [`Check`]: `bool`, `Option<T>` (the wait returns the `T`), `Result<T, E>`
//! (the `E` is the last observed state, shown when the wait times out; see
//! [`holds`]) or an [`Attempt`] (which can also give up at once). A timeout
//! panics naming what was awaited, the timeout and the last observed state;
//! the `try_` forms return a [`WaitError`] instead, for harness code that
//! reports errors to its caller.
#![forbid(unsafe_code)]

mod check;
mod wait;

pub use check::{holds, Attempt, Check};
pub use wait::{
    eventually, eventually_async, eventually_watch, try_eventually, try_eventually_async, WaitError,
};
