//! Helpers for von's end-to-end tests: hosts as network namespaces with two
//! underlay links each, real agents, real programs, cleanup on every exit.
//!
//! Its own crate because the end-to-end tests drive the `von` binary as an
//! operator would (a process per host, configs on disk, `von status`), so
//! they must not link the agent's internals. See docs/testing.md. The hosts,
//! agents, `ping` and status parsing live in `von-lab` (shared with `von
//! demo`) and are re-exported here under their old paths; what only the
//! tests need stays here.
//!
//! A test reads like this:
//!
//! ```no_run
//! # fn main() -> von_tests::Result<()> {
//! use von_tests::{Ping, Topology, VonSpec};
//! if !von_tests::e2e_enabled("example")? {
//!     return Ok(());
//! }
//! let mut topo = Topology::new(2)?;
//! let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
//! topo.start(&[grid.clone()])?;
//! let report = Ping::new(grid.address(2), 10).run(topo.host(1).ns())?;
//! assert_eq!(report.lost(), 0);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod disk;
pub mod files;
pub mod forge;
pub mod ledger;
pub mod observe;
pub mod packet;
pub mod router;
pub mod sniff;
pub mod stream;
pub mod tool;

use std::sync::{Mutex, MutexGuard};

pub use tool::{Record, Tool, UdpReceiver, UdpReport};
pub use von_lab::{
    Agent, Error, Family, Host, Link, Netns, Ping, PingReport, Result, Status, Topology,
    UNDERLAY_PORT, Underlay, VonCounters, VonSpec, wait_for,
};
pub use von_lab::{IperfReport, iperf3};
pub use von_lab::{agent, error, iperf, link, netns, ping, process, status, topology, vonbin};

/// Whether the end-to-end test `name` should run.
///
/// Without root it prints `skipped: needs root (run as root or via sudo)`
/// and returns `Ok(false)`, so a developer's plain `cargo test` passes;
/// with `VON_E2E=require` (CI) that is an error instead.
pub fn e2e_enabled(name: &str) -> Result<bool> {
    if von_lab::is_root() {
        return Ok(true);
    }
    if std::env::var("VON_E2E").as_deref() == Ok("require") {
        return Err(Error::NotRoot);
    }
    eprintln!("{name}: skipped: needs root (run as root or via sudo)");
    Ok(false)
}

/// Serialises the tests that saturate the CPU (bulk transfers, iperf3), so
/// on a two-core machine they never measure each other. Light tests run in
/// parallel around them.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    // A test that panicked while holding it leaves nothing to repair.
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
