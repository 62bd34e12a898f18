//! The configuration schema of von, as types that cannot hold bad values.
//!
//! Kept in its own crate so the agent, the key manager and `von up --check`
//! share one parser and one set of error messages.
#![forbid(unsafe_code)]
