//! Issue 15: the per-sender frame elimination counters (IEEE 802.1CB's
//! terms, docs/status.md) with real agents. h1 pings h2 through the VON.
//!
//! 1. nft on h2 drops, on both underlays, every frame of a known set: the
//!    echo requests of one unique size. After a window's worth (16,320) of
//!    further frames, h2's `lost` for h1 equals the set's size exactly.
//! 2. h1's underlay A is cut: h2's `discarded` for h1 stops growing while
//!    `passed` keeps pace with the pings.
//! 3. h1's agent is killed and started again: one `resets` at h2.
//!
//! ```text
//!  ┌──── h1 ────┐ ── ua (A) ──► ┌──── h2: nft drops udp length L on ua and ub ────┐
//!  │ ping ──►   │ ── ub (B) ──► │ von up: peers[h1].elimination.{lost,passed,...} │
//!  └────────────┘               └─────────────────────────────────────────────────┘
//! ```

use std::time::Duration;

use serde_json::Value;
use von_tests::agent::Stop;
use von_tests::{Ping, Result, Topology, UNDERLAY_PORT, Underlay, VonSpec};

/// Echo requests lost on both underlays.
const LOST: u32 = 25;
/// Their ICMP payload: a size nothing else in the test sends.
const SIZE: u32 = 1000;
/// UDP length of such a frame: 8 (UDP) + 40 (frame) + 20 (IPv4) + 8 (ICMP) + SIZE.
const UDP_LEN: u32 = 8 + 40 + 20 + 8 + SIZE;
/// More frames than the replay window holds, so the gaps leave it.
const PUSH: u32 = 17_000;

/// h2's elimination counters for sender h1.
fn from_h1(topo: &Topology) -> Result<Value> {
    let status = topo.agent(2).status()?;
    Ok(status
        .peer("grid", "h1")
        .map_or(Value::Null, |p| p["elimination"].clone()))
}

fn n(e: &Value, field: &str) -> u64 {
    e[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no elimination.{field} in {e}"))
}

#[test]
fn lost_matches_frames_dropped_on_every_underlay_and_a_cut_stops_discards() -> Result<()> {
    if !von_tests::e2e_enabled("e2e elimination")? {
        return Ok(());
    }
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let h2 = topo.host(2).ns();
    let script = format!(
        "table inet elimtest {{\n chain input {{\n  type filter hook input priority -10;\n  \
         udp dport {UNDERLAY_PORT} udp length {UDP_LEN} counter drop\n }}\n}}\n"
    );
    h2.exec_ok(["sh", "-c", &format!("nft -f - <<'EOF'\n{script}EOF\n")])?;
    let before = from_h1(&topo)?;
    eprintln!("before: {before}");

    // 1. The known set, lost on both underlays.
    let r = Ping::new(grid.address(2), LOST)
        .size(SIZE)
        .interval(Duration::from_millis(20))
        .wait(1)
        .run(topo.host(1).ns())?;
    assert_eq!(r.received, 0, "every request was dropped: {}", r.output);
    let dropped = h2.exec_ok(["nft", "list", "chain", "inet", "elimtest", "input"])?;
    assert!(
        dropped.stdout.contains(&format!("packets {} ", 2 * LOST)),
        "nft dropped both copies of each: {}",
        dropped.stdout
    );
    let mid = from_h1(&topo)?;
    assert_eq!(
        n(&mid, "lost"),
        n(&before, "lost"),
        "still in the window: {mid}"
    );
    // Push the gaps out of the window.
    let push = format!("{PUSH}");
    let dst = grid.address(2).to_string();
    topo.host(1)
        .ns()
        .exec_ok(["ping", "-f", "-q", "-c", &push, &dst])?;
    let after = von_tests::wait_for(
        "the pushed pings to be passed",
        Duration::from_secs(10),
        || {
            let e = from_h1(&topo)?;
            let passed = n(&e, "passed") - n(&before, "passed");
            Ok(if passed >= u64::from(PUSH) {
                Ok(e)
            } else {
                Err(format!("passed {passed} of {PUSH}: {e}"))
            })
        },
    )?;
    let lost = n(&after, "lost") - n(&before, "lost");
    eprintln!("dropped {LOST} requests on both underlays, pushed {PUSH}: lost {lost}, {after}");
    assert_eq!(lost, u64::from(LOST), "{after}");
    // `von status` shows the same per sender.
    let text = topo.agent(2).status_text()?;
    eprintln!("{text}");
    let row = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("from"))
        .find(|l| l.trim_start().starts_with("h1 "))
        .unwrap_or_else(|| panic!("no elimination row for h1 in\n{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[4],
        n(&after, "lost").to_string(),
        "lost column: {row}"
    );
    assert_eq!(n(&after, "rogue"), 0, "{after}");
    assert_eq!(n(&after, "resets"), 0, "{after}");

    // 2. Underlay A cut at the sender: no more second copies.
    topo.host(1).cut(Underlay::A)?;
    std::thread::sleep(Duration::from_millis(200));
    let cut = from_h1(&topo)?;
    let r = Ping::new(grid.address(2), 200)
        .interval(Duration::from_millis(10))
        .run(topo.host(1).ns())?;
    assert_eq!(r.received, 200, "{}", r.output);
    let later = from_h1(&topo)?;
    let passed = n(&later, "passed") - n(&cut, "passed");
    let discarded = n(&later, "discarded") - n(&cut, "discarded");
    eprintln!("A cut: passed {passed}, discarded {discarded} meanwhile");
    assert!(passed >= 200, "passed keeps growing: {later}");
    assert_eq!(discarded, 0, "discarded stops with one underlay: {later}");

    // 3. h1 restarts (kill -9; a newer incarnation under the same key): one reset.
    topo.host(1).restore(Underlay::A)?;
    topo.restart_agent(1, Stop::Kill, |_| Ok(()))?;
    let r = Ping::new(grid.address(2), 20)
        .interval(Duration::from_millis(100))
        .wait(2)
        .run(topo.host(1).ns())?;
    assert!(
        r.received > 0,
        "h1 reaches h2 after its restart: {}",
        r.output
    );
    let restarted = from_h1(&topo)?;
    eprintln!("h1 restarted: {restarted}");
    assert_eq!(
        n(&restarted, "resets") - n(&later, "resets"),
        1,
        "{restarted}"
    );
    Ok(())
}
