//! The von agent: interfaces, underlays, the per-VON pipeline, the control
//! client, status and metrics. The `von` binary is a thin CLI over this crate.
//!
//! It is a library so that the end-to-end tests, the benchmarks and the
//! in-memory twins can drive the same pipeline the daemon runs. The packet
//! core (`pipeline`) is sans-IO and forbids `unsafe`; only the socket edge
//! (`underlay`) touches the OS below what std and tokio offer.
#![deny(unsafe_code)]

pub mod control;
pub mod demux;
pub mod driver;
pub mod guard;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod state;
pub mod static_mode;
pub mod status;
pub mod tun;
pub mod twin;
pub mod underlay;
