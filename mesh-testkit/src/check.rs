//! What one look at the awaited state found.
use std::fmt::{Debug, Display};

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// The awaited state holds; the wait returns this value.
    Done(T),
    /// Not yet; the observed state, reported if the wait times out.
    Pending(String),
    /// It never will (a process exited, a peer went away): stop waiting.
    GiveUp(String),
}

/// A closure result the waits understand.
pub trait Check {
    /// What the wait returns once the state holds.
    type Value;

    fn attempt(self) -> Attempt<Self::Value>;
}

impl<T> Check for Attempt<T> {
    type Value = T;

    fn attempt(self) -> Attempt<T> {
        self
    }
}

impl Check for bool {
    type Value = ();

    fn attempt(self) -> Attempt<()> {
        if self {
            Attempt::Done(())
        } else {
            Attempt::Pending("the condition was still false".into())
        }
    }
}

impl<T> Check for Option<T> {
    type Value = T;

    fn attempt(self) -> Attempt<T> {
        match self {
            Some(v) => Attempt::Done(v),
            None => Attempt::Pending("nothing found yet (None)".into()),
        }
    }
}

/// `Err` carries the observed state (or the error of the last attempt).
impl<T, E: Display> Check for Result<T, E> {
    type Value = T;

    fn attempt(self) -> Attempt<T> {
        match self {
            Ok(v) => Attempt::Done(v),
            Err(e) => Attempt::Pending(format!("{e:#}")),
        }
    }
}

/// `Ok(observed.clone())` when `done`, else `Err` with `observed` in Debug
/// form: for closures whose state is the value they look at, so a timeout
/// shows it.
pub fn holds<T: Clone + Debug>(done: bool, observed: &T) -> Result<T, String> {
    if done {
        Ok(observed.clone())
    } else {
        Err(format!("{observed:?}"))
    }
}
