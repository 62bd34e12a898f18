//! Issue 4, test 2: a 200 MB TCP transfer through the VON arrives
//! byte-identical. h1 streams a deterministic pseudo-random sequence; h2
//! regenerates it and compares every byte on arrival, and the SHA-256 of
//! what arrived is checked against the sender's stream computed here.
//!
//! ```text
//!  ┌────────────── h1 ──────────────┐          ┌────────────── h2 ──────────────┐
//!  │ von-e2e-tool stream-send ──┐   │          │   ┌─► von-e2e-tool stream-recv │
//!  │ von-grid 100.64.1.1 ◄──────┘   │          │ von-grid 100.64.1.2            │
//!  │ [von up]                       │          │ [von up]                       │
//!  │ ua 192.0.2.1 ──────────────────┼─ veth A ─┼── ua 192.0.2.2                 │
//!  │ ub 198.51.100.1 ───────────────┼─ veth B ─┼── ub 198.51.100.2              │
//!  └────────────────────────────────┘          └────────────────────────────────┘
//! ```

use std::time::Duration;

use von_tests::{Result, Tool, Topology, VonSpec, stream};

const BYTES: u64 = 200_000_000;

#[test]
fn two_hundred_megabytes_arrive_byte_identical() -> Result<()> {
    if !von_tests::e2e_enabled("e2e bulk transfer")? {
        return Ok(());
    }
    let _heavy = von_tests::heavy();
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;

    let seed = u64::from(std::process::id());
    let listen = (grid.address(2), 9000).into();
    // Generous: even at 10 Mbit/s the transfer would finish in ~160 s.
    let got = tool.stream(
        topo.host(2).ns(),
        listen,
        topo.host(1).ns(),
        seed,
        BYTES,
        Duration::from_secs(600),
    )?;
    eprintln!(
        "bulk transfer: {} bytes in {:.1} s ({:.0} Mbit/s), seed {seed}",
        got.received,
        got.seconds,
        got.received as f64 * 8.0 / got.seconds / 1e6
    );
    assert_eq!(got.received, BYTES, "byte count");
    assert_eq!(got.first_mismatch, None, "first differing byte");
    assert_eq!(
        got.sha256,
        stream::expected_sha256(seed, BYTES),
        "SHA-256 of what arrived"
    );

    let c = topo.agent(2).counters("grid")?;
    assert_eq!(c.get("auth_failures")?, 0);
    assert_eq!(c.get("replays")?, 0);
    Ok(())
}
