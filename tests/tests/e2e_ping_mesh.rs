//! Issue 4, test 1: three hosts in one VON; every ordered pair pings the
//! other through the VON: 0 lost, 0 duplicates (each request crosses A and
//! B, and the receiver keeps exactly one copy).
//!
//! ```text
//!  ┌──────── h1 ────────┐  ┌──────── h2 ────────┐  ┌──────── h3 ────────┐
//!  │ von-grid 100.64.1.1│  │ von-grid 100.64.1.2│  │ von-grid 100.64.1.3│
//!  │   [von up]         │  │   [von up]         │  │   [von up]         │
//!  │ ua .2.1   ub .100.1│  │ ua .2.2   ub .100.2│  │ ua .2.3   ub .100.3│
//!  └──┬──────────┬──────┘  └──┬──────────┬──────┘  └──┬──────────┬──────┘
//!  ┌──┴──────────┴────────────┴──────────┴────────────┴──────────┴──────┐
//!  │ sw:  lana = LAN A 192.0.2.0/24       lanb = LAN B 198.51.100.0/24  │
//!  └────────────────────────────────────────────────────────────────────┘
//! ```

use std::time::Duration;

use von_tests::{Ping, Result, Topology, VonSpec};

#[test]
fn three_hosts_every_pair_pings_without_loss_or_duplicates() -> Result<()> {
    if !von_tests::e2e_enabled("e2e ping mesh")? {
        return Ok(());
    }
    let mut topo = Topology::new(3)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2, 3]);
    topo.start(std::slice::from_ref(&grid))?;

    let mut total = 0;
    for from in 1..=3u8 {
        for to in (1..=3u8).filter(|&t| t != from) {
            let r = Ping::new(grid.address(to), 20)
                .interval(Duration::from_millis(20))
                .run(topo.host(usize::from(from)).ns())?;
            assert_eq!(r.transmitted, 20, "h{from} -> h{to}:\n{}", r.output);
            assert_eq!(r.lost(), 0, "h{from} -> h{to} lost packets:\n{}", r.output);
            assert_eq!(
                r.duplicates, 0,
                "h{from} -> h{to} saw duplicates:\n{}",
                r.output
            );
            total += r.received;
        }
    }
    eprintln!("ping mesh: 6 ordered pairs, {total} replies of 120, 0 duplicates");

    // Every receiver discarded the second copies, none as a replay. Each
    // host got 80 frames (20 requests from each of two peers, 20 replies
    // from each); ping stops at the first copy, so the second copy of the
    // last pair's frames may still be on its way: wait for each host.
    for n in 1..=3 {
        let c = von_tests::wait_for(
            &format!("h{n} to discard 80 second copies"),
            Duration::from_secs(10),
            || {
                let c = topo.agent(n).counters("grid")?;
                let dups = c.get("duplicates")?;
                Ok(if dups >= 80 {
                    Ok(c)
                } else {
                    Err(format!("{dups} duplicates"))
                })
            },
        )?;
        assert_eq!(c.get("replays")?, 0, "h{n}");
        assert_eq!(c.get("auth_failures")?, 0, "h{n}");
        assert!(
            c.get("duplicates")? >= 80,
            "h{n} discarded {} duplicates",
            c.get("duplicates")?
        );
    }
    Ok(())
}
