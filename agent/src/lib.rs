//! The von agent: interfaces, underlays, the per-VON pipeline, the control
//! client, status and metrics. The `von` binary is a thin CLI over this crate.
