//! Helpers for von's end-to-end tests: hosts as network namespaces with two
//! underlay links each, real agents, real programs, cleanup on every exit.
//!
//! Its own crate because the end-to-end tests drive the `von` binary as an
//! operator would (a process per host, configs on disk, `von status`), so
//! they must not link the agent's internals. See docs/testing.md.
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

pub mod agent;
pub mod error;
pub mod forge;
pub mod iperf;
pub mod link;
pub mod netns;
pub mod observe;
pub mod packet;
pub mod ping;
pub mod process;
pub mod router;
pub mod status;
pub mod stream;
pub mod tool;
pub mod topology;
pub mod vonbin;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use agent::{Agent, VonSpec};
pub use error::{Error, Result};
pub use iperf::{IperfReport, iperf3};
pub use link::{Link, link};
pub use netns::Netns;
pub use ping::{Ping, PingReport};
pub use status::{Status, VonCounters};
pub use tool::Tool;
pub use topology::{Host, Topology, UNDERLAY_PORT, Underlay};

/// Whether the end-to-end test `name` should run.
///
/// Without root it prints `skipped: needs root (run as root or via sudo)`
/// and returns `Ok(false)`, so a developer's plain `cargo test` passes;
/// with `VON_E2E=require` (CI) that is an error instead.
pub fn e2e_enabled(name: &str) -> Result<bool> {
    if effective_uid() == Some(0) {
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

/// Polls `probe` every 50 ms until it returns `Ok(Ok(value))`, for up to
/// `timeout`. `Ok(Err(seen))` means "not yet", `seen` saying what was seen
/// (it goes into the error when time runs out); `Err` stops at once. For counters that settle asynchronously
/// (the second copy of a frame arrives after the first was delivered).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Result<T, String>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe()? {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            return Err(Error::WaitTimedOut {
                what: what.to_owned(),
                after: timeout,
                last,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The effective uid, from `/proc/self/status` (no `unsafe` needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_number() {
        let status = "Name:\tcargo\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name:\tx\n"), None);
    }
}
