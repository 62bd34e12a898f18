//! Issue 14: 1 to 4 named underlays, over IPv4, IPv6 or both. Real agents
//! in namespaces, real `ping` through the VON, real cuts
//! (`ip link set uX down` in h1) that stay for the rest of the run:
//!
//! - one underlay: everything arrives, no duplicate is ever made;
//! - three underlays with two of them cut: nothing is lost, and h2 sees
//!   h1's two cut links go down while the third stays up;
//! - two IPv6 underlays, then a mixed pair (A over IPv4, B over IPv6) with
//!   A cut: nothing lost either way, and every surviving underlay carried
//!   a copy of every request.
//!
//! ```text
//!  ┌──── h1 ────┐   ua ── lana ── ua   ┌──── h2 ────┐
//!  │ ping ──►   │   ub ── lanb ── ub   │  von-grid  │   (1 to 4 links,
//!  │ von-grid   │   uc ── lanc ── uc   │            │    IPv4 or IPv6)
//!  └────────────┘        ✂ = cut in h1  └────────────┘
//! ```

use std::thread::sleep;
use std::time::Duration;

use von_tests::observe::link_up;
use von_tests::{Family, Ping, PingReport, Result, Topology, Underlay, VonSpec, wait_for};

const PINGS: u32 = 400;
const TICK: Duration = Duration::from_millis(10);

/// What one run measured.
struct Run {
    report: PingReport,
    /// Frames h2 received on each underlay during the ping, in order.
    received: Vec<(Underlay, u64)>,
}

/// `hosts` hosts on `families`, one VON over all; h1 pings h2 `PINGS`
/// times and `cut` goes down in h1 0.5 s in, for good. Waits until h2 sees
/// each of h1's cut links down and the others up.
fn run(hosts: usize, families: &[Family], cut: &[Underlay]) -> Result<Run> {
    let mut topo = Topology::with_underlays(hosts, families)?;
    let members: Vec<u8> = (1..=hosts as u8).collect();
    let grid = VonSpec::new("grid", 7, 1, &members);
    topo.start(std::slice::from_ref(&grid))?;
    let before = topo.agent(2).counters("grid")?;
    let ping = Ping::new(grid.address(2), PINGS).interval(TICK);
    let running = ping.spawn(topo.host(1).ns())?;
    sleep(Duration::from_millis(500));
    for &u in cut {
        topo.host(1).cut(u)?;
    }
    let report = PingReport::parse(&running.wait(ping.timeout())?)?;
    let after = topo.agent(2).counters("grid")?;
    let received = topo
        .underlays()
        .into_iter()
        .map(|u| Ok((u, before.delta_on(&after, u, "rx_frames")?)))
        .collect::<Result<Vec<_>>>()?;
    // h2's view of h1, per underlay: the cut ones down, the others up.
    wait_for(
        "h2 to see h1's cut links down",
        Duration::from_secs(5),
        || {
            let status = topo.agent(2).status()?;
            for u in topo.underlays() {
                let up = link_up(&status, "grid", "h1", u)?;
                if up == cut.contains(&u) {
                    return Ok(Err(format!(
                        "link {u} is {}",
                        if up { "up" } else { "down" }
                    )));
                }
            }
            Ok(Ok(()))
        },
    )?;
    // The status lists exactly the topology's underlays, by name.
    let status = topo.agent(2).status()?;
    let names: Vec<String> = status.json()["underlays"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let want: Vec<String> = topo
        .underlays()
        .iter()
        .map(|u| u.key().to_owned())
        .collect();
    assert_eq!(names, want, "status underlays");
    Ok(Run { report, received })
}

/// Nothing lost, nothing doubled, and every underlay that stayed up carried
/// a copy of every request (each one frame to h2), while each cut one fell
/// well short.
fn check(what: &str, r: &Run, cut: &[Underlay]) {
    eprintln!(
        "{what}: {} sent, {} received, {} dup; h2 frames per underlay {:?}",
        r.report.transmitted,
        r.report.received,
        r.report.duplicates,
        r.received
            .iter()
            .map(|(u, n)| format!("{}={n}", u.key()))
            .collect::<Vec<_>>()
    );
    assert_eq!(r.report.transmitted, PINGS, "{what}: {}", r.report.output);
    assert_eq!(
        r.report.lost(),
        0,
        "{what} lost packets:\n{}",
        r.report.output
    );
    assert_eq!(r.report.duplicates, 0, "{what}: {}", r.report.output);
    for (u, n) in &r.received {
        if cut.contains(u) {
            assert!(
                *n + 100 <= u64::from(PINGS),
                "{what}: underlay {u} was cut but carried {n} frames"
            );
        } else {
            assert!(
                *n >= u64::from(PINGS),
                "{what}: underlay {u} stayed up but carried only {n} frames"
            );
        }
    }
}

#[test]
fn one_underlay_carries_everything() -> Result<()> {
    if !von_tests::e2e_enabled("e2e one underlay")? {
        return Ok(());
    }
    let r = run(2, &[Family::V4], &[])?;
    check("one underlay", &r, &[]);
    assert_eq!(r.received.len(), 1);
    Ok(())
}

#[test]
fn three_underlays_with_two_cut_lose_nothing() -> Result<()> {
    if !von_tests::e2e_enabled("e2e three underlays, two cut")? {
        return Ok(());
    }
    let cut = [Underlay::A, Underlay::C];
    let r = run(3, &[Family::V4, Family::V4, Family::V4], &cut)?;
    check("three underlays, a and c cut", &r, &cut);
    Ok(())
}

#[test]
fn ipv6_underlays_carry_the_von() -> Result<()> {
    if !von_tests::e2e_enabled("e2e IPv6 underlays")? {
        return Ok(());
    }
    let r = run(2, &[Family::V6, Family::V6], &[])?;
    check("two IPv6 underlays", &r, &[]);
    Ok(())
}

#[test]
fn mixed_underlays_lose_nothing_when_the_ipv4_one_is_cut() -> Result<()> {
    if !von_tests::e2e_enabled("e2e mixed underlays")? {
        return Ok(());
    }
    let cut = [Underlay::A];
    let r = run(2, &[Family::V4, Family::V6], &cut)?;
    check("A over IPv4 (cut), B over IPv6", &r, &cut);
    Ok(())
}
