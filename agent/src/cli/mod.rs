//! One module per `von` subcommand.

pub mod ca;
pub mod cert;
pub mod completions;
pub mod keymgr;
pub mod ledger;
pub mod reload;
pub mod reserve;
pub mod router;
pub mod status;
pub mod up;
