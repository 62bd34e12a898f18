//! One module per `von` subcommand.

pub mod ca;
pub mod cert;
