//! Hosts as network namespaces with two underlays, for the demo and the
//! tests: each host a namespace with `ua` and `ub`, real `von up` agents in
//! them, `ping` and `von status` read back, and everything removed on drop.
//!
//! Its own crate because two users build the same hosts: the demo (its own
//! binary, `von-demo`, so this crate is never in the production `von`) and
//! the end-to-end tests (`von-tests`). It drives programs
//! as an operator would (`ip`, `ping`, the `von` binary) and links none of
//! the agent's internals.
//!
//! ```no_run
//! # fn main() -> von_lab::Result<()> {
//! use von_lab::{Ping, Topology, VonSpec};
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
pub mod etcd;
pub mod iperf;
pub mod link;
pub mod netns;
pub mod ping;
pub mod process;
pub mod status;
pub mod topology;
pub mod vonbin;

use std::time::{Duration, Instant};

pub use agent::{Agent, VonSpec};
pub use error::{Error, Result};
pub use etcd::EtcdCluster;
pub use iperf::{IperfReport, iperf3};
pub use link::{Link, link};
pub use netns::Netns;
pub use ping::{Ping, PingReport};
pub use status::{Status, VonCounters};
pub use topology::{Family, Host, Topology, UNDERLAY_PORT, Underlay};

/// Whether this process runs as root (effective uid 0): namespaces, veth
/// links and TUN interfaces need it.
pub fn is_root() -> bool {
    effective_uid() == Some(0)
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
