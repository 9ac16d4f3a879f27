//! `meshctl analyze`'s library: checks a configuration (a directory, parsed
//! documents, or raw resources as JSON from `/config_dump`) and reports
//! [`Finding`]s with stable codes ([`codes`]) — what the control plane
//! would reject, what it accepts but cannot do as written, and references
//! that lead nowhere.
pub mod codes;
mod finding;

pub use finding::{Finding, Report, Severity};
