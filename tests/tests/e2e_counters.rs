//! Issue 4, test 4: a clean run's counters add up exactly. h1 pings h2
//! through the VON; for each direction (requests h1→h2, replies h2→h1):
//! frames sent on A = frames sent on B = inner packets sent; the receiver
//! delivered = inner packets, and discarded as duplicates = inner packets.
//! IPv6 is off in every test namespace (no RS/MLD on the TUN), and the
//! counters are read before and after, so only the ping is counted.
//!
//! ```text
//!  ┌───────── h1 ─────────┐   requests ──►   ┌───────── h2 ─────────┐
//!  │ ping ──► von-grid    │   ◄── replies    │ von-grid 100.64.1.2  │
//!  │ [von up] 100.64.1.1  │                  │ [von up]             │
//!  │ ua 192.0.2.1 ────────┼──── veth A ──────┼── ua 192.0.2.2       │
//!  │ ub 198.51.100.1 ─────┼──── veth B ──────┼── ub 198.51.100.2    │
//!  └──────────────────────┘                  └──────────────────────┘
//! ```

use std::time::Duration;

use von_tests::{Ping, Result, Topology, Underlay, VonCounters, VonSpec};

const COUNT: u32 = 300;

#[test]
fn clean_run_counters_add_up_exactly() -> Result<()> {
    if !von_tests::e2e_enabled("e2e counters")? {
        return Ok(());
    }
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let before = [
        topo.agent(1).counters("grid")?,
        topo.agent(2).counters("grid")?,
    ];

    let r = Ping::new(grid.address(2), COUNT)
        .interval(Duration::from_millis(10))
        .run(topo.host(1).ns())?;
    assert_eq!(
        (r.transmitted, r.received, r.duplicates),
        (COUNT, COUNT, 0),
        "{}",
        r.output
    );
    let n = u64::from(COUNT);

    // The second copy of the last frames may still be in flight: wait until
    // both receivers have counted every duplicate (or time out and report).
    let after = von_tests::wait_for(
        "every second copy to be counted",
        Duration::from_secs(10),
        || {
            let now = [
                topo.agent(1).counters("grid")?,
                topo.agent(2).counters("grid")?,
            ];
            let dups = [
                before[0].delta(&now[0], "duplicates")?,
                before[1].delta(&now[1], "duplicates")?,
            ];
            Ok(if dups == [n, n] {
                Ok(now)
            } else {
                Err(format!("duplicates h1, h2 = {dups:?}"))
            })
        },
    );
    let after = match after {
        Ok(a) => a,
        // Fall through to the exact assertions, which name the counter.
        Err(_) => [
            topo.agent(1).counters("grid")?,
            topo.agent(2).counters("grid")?,
        ],
    };

    for (sender, receiver, what) in [(0, 1, "requests h1->h2"), (1, 0, "replies h2->h1")] {
        let s = Delta::new(&before[sender], &after[sender]);
        let d = Delta::new(&before[receiver], &after[receiver]);
        eprintln!(
            "{what}: sent {} inner, {} on A, {} on B; received {} on A, {} on B; delivered {}, duplicates {}",
            s.get("tx_packets")?,
            s.on(Underlay::A, "tx_frames")?,
            s.on(Underlay::B, "tx_frames")?,
            d.on(Underlay::A, "rx_frames")?,
            d.on(Underlay::B, "rx_frames")?,
            d.get("delivered")?,
            d.get("duplicates")?,
        );
        assert_eq!(s.get("tx_packets")?, n, "{what}: inner packets sent");
        assert_eq!(
            s.on(Underlay::A, "tx_frames")?,
            n,
            "{what}: frames sent on A"
        );
        assert_eq!(
            s.on(Underlay::B, "tx_frames")?,
            n,
            "{what}: frames sent on B"
        );
        assert_eq!(
            d.on(Underlay::A, "rx_frames")?,
            n,
            "{what}: frames received on A"
        );
        assert_eq!(
            d.on(Underlay::B, "rx_frames")?,
            n,
            "{what}: frames received on B"
        );
        assert_eq!(d.get("delivered")?, n, "{what}: delivered");
        assert_eq!(d.get("duplicates")?, n, "{what}: duplicates discarded");
        for zero in [
            "replays",
            "too_old",
            "auth_failures",
            "policy_drops",
            "rate_drops",
            "malformed",
            "tun_errors",
        ] {
            assert_eq!(s.get(zero)? + d.get(zero)?, 0, "{what}: {zero}");
        }
        // Each frame was opened once: the second copy costs no decryption.
        assert_eq!(d.get("aead_opens")?, n, "{what}: AEAD opens");
    }
    Ok(())
}

/// Differences between two readings of one agent.
struct Delta<'a> {
    before: &'a VonCounters,
    after: &'a VonCounters,
}

impl<'a> Delta<'a> {
    fn new(before: &'a VonCounters, after: &'a VonCounters) -> Self {
        Self { before, after }
    }

    fn get(&self, name: &str) -> Result<u64> {
        self.before.delta(self.after, name)
    }

    fn on(&self, u: Underlay, name: &str) -> Result<u64> {
        self.before.delta_on(self.after, u, name)
    }
}
