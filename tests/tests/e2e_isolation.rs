//! Issue 4, test 5: one host in two VONs; a member of one VON alone cannot
//! reach the other VON, and a spoofed inner source is dropped; both are
//! counted (`policy_drops` at the sender's edge) and nothing arrives.
//! Then h2 plays a member gone rogue: it seals frames with grid's key under
//! its own member id (the receiver's check an honest agent never triggers):
//! one with its own inner source is delivered, one with a foreign inner
//! source authenticates yet is refused (`inner_source_rejected` on h1).
//!
//! ```text
//!              VON grid (ON id 7)           VON med (ON id 8)
//!              100.64.1.0/24                100.64.2.0/24
//!  ┌───── h2 ─────┐          ┌────────── h1 ──────────┐          ┌───── h3 ─────┐
//!  │ von-grid .1.2│          │ von-grid .1.1          │          │ von-med  .2.3│
//!  │ + route to   │          │ von-med  .2.1          │          │              │
//!  │ 100.64.2.0/24│          │ (no forwarding)        │          │              │
//!  │ + spoof .1.99│          │                        │          │              │
//!  └─ ua ── ub ───┘          └──── ua ──── ub ────────┘          └─ ua ── ub ───┘
//!  ┌───┴─────┴──────────────────────┴──────┴─────────────────────────┴─────┴────┐
//!  │ sw:  lana = LAN A 192.0.2.0/24            lanb = LAN B 198.51.100.0/24     │
//!  └────────────────────────────────────────────────────────────────────────────┘
//! ```

use std::time::Duration;

use von_tests::{Ping, Result, Tool, Topology, VonSpec, forge};

const COUNT: u32 = 5;

#[test]
fn one_von_cannot_reach_another_and_spoofed_sources_are_dropped() -> Result<()> {
    if !von_tests::e2e_enabled("e2e isolation")? {
        return Ok(());
    }
    let mut topo = Topology::new(3)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    let med = VonSpec::new("med", 8, 2, &[1, 3]);
    topo.start(&[grid.clone(), med.clone()])?;
    let ping = |to, from: usize| {
        Ping::new(to, COUNT)
            .interval(Duration::from_millis(50))
            .wait(1)
            .run(topo.host(from).ns())
    };

    // Both VONs work, through the one host that is in both.
    for (to, from) in [
        (grid.address(2), 1),
        (med.address(3), 1),
        (grid.address(1), 2),
        (med.address(1), 3),
    ] {
        let r = ping(to, from)?;
        assert_eq!(
            (r.received, r.duplicates),
            (COUNT, 0),
            "h{from} -> {to}:\n{}",
            r.output
        );
    }

    // h2, a member of grid only, routes med's prefix into its grid interface.
    let h2 = topo.host(2);
    h2.ns()
        .ip(&["route", "add", "100.64.2.0/24", "dev", &grid.interface()])?;
    let h2_before = topo.agent(2).counters("grid")?;
    let h1_before = [
        topo.agent(1).counters("grid")?,
        topo.agent(1).counters("med")?,
    ];
    let h3_before = topo.agent(3).counters("med")?;
    for to in [med.address(1), med.address(3)] {
        let r = ping(to, 2)?;
        assert_eq!(r.received, 0, "h2 reached VON med's {to}:\n{}", r.output);
    }
    // ping gives up on its own clock; h2's agent counts each refusal when it
    // reads the request from the TUN, which nothing orders before ping's exit.
    let want = u64::from(2 * COUNT);
    let h2_after = von_tests::wait_for(
        "h2 to count every cross-VON request",
        Duration::from_secs(10),
        || {
            let now = topo.agent(2).counters("grid")?;
            let refused = h2_before.delta(&now, "policy_drops")?;
            Ok(if refused >= want {
                Ok(now)
            } else {
                Err(format!("{refused} of {want} counted as policy drops"))
            })
        },
    )?;
    let refused = h2_before.delta(&h2_after, "policy_drops")?;
    eprintln!(
        "cross-VON: h2 sent {} requests to med addresses; {refused} counted as policy drops",
        2 * COUNT
    );
    assert_eq!(refused, want, "policy drops for destinations outside grid");
    assert_eq!(
        h2_before.delta(&h2_after, "tx_packets")?,
        0,
        "nothing was sealed"
    );

    // A spoofed inner source: a second address on h2's grid interface.
    h2.ns()
        .ip(&["addr", "add", "100.64.1.99/32", "dev", &grid.interface()])?;
    let spoofed = Ping::new(grid.address(1), COUNT)
        .interval(Duration::from_millis(50))
        .wait(1)
        .source(
            "100.64.1.99"
                .parse::<std::net::Ipv4Addr>()
                .expect("literal address"),
        )
        .run(h2.ns())?;
    assert_eq!(
        spoofed.received, 0,
        "a spoofed source got through:\n{}",
        spoofed.output
    );
    // The same path with h2's own address still works.
    let honest = ping(grid.address(1), 2)?;
    assert_eq!(honest.received, COUNT, "{}", honest.output);
    // No wait needed here: h2's agent reads its TUN in order, so the honest
    // replies prove it has read (and counted) the spoofed requests before.
    let h2_spoof = topo.agent(2).counters("grid")?;
    let spoof_drops = h2_after.delta(&h2_spoof, "policy_drops")?;
    eprintln!(
        "spoofed source: h2 sent {COUNT} requests from 100.64.1.99; {spoof_drops} counted as policy drops"
    );
    assert_eq!(
        spoof_drops,
        u64::from(COUNT),
        "policy drops for the spoofed source"
    );
    assert_eq!(
        h2_after.delta(&h2_spoof, "tx_packets")?,
        u64::from(COUNT),
        "only the honest pings were sealed"
    );

    // Nothing of it arrived anywhere.
    let h1_after = [
        topo.agent(1).counters("grid")?,
        topo.agent(1).counters("med")?,
    ];
    let h3_after = topo.agent(3).counters("med")?;
    assert_eq!(
        h1_before[1].delta(&h1_after[1], "delivered")?,
        0,
        "h1 med delivered"
    );
    assert_eq!(
        h3_before.delta(&h3_after, "delivered")?,
        0,
        "h3 med delivered"
    );
    assert_eq!(
        h1_before[0].delta(&h1_after[0], "delivered")?,
        u64::from(COUNT),
        "h1 grid delivered only the honest pings"
    );

    // The rogue member. Its sequence numbers use the last incarnation, far
    // above h2's real one, so h1's floor and window take them; this comes
    // last because it leaves h2's own later frames behind that window.
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let key = topo.group_key("grid").expect("grid was started");
    let seq0 =
        u64::from(von_crypto::sequence::MAX_INCARNATION) << von_crypto::sequence::COUNTER_BITS;
    let cases = [
        ("own source", grid.address(2), 1, 0),
        (
            "foreign source",
            "100.64.1.99".parse().expect("literal address"),
            0,
            1,
        ),
    ];
    for (i, (what, src, delivered, rejected)) in (0u64..).zip(cases) {
        let frame = forge::echo_frame(&key, grid.on_id, 2, seq0 + i, src, grid.address(1))?;
        let got = forge::judged_at(&topo, &tool, 2, 1, "grid", &frame)?;
        eprintln!(
            "rogue frame with {what} {src}: delivered +{}, inner_source_rejected +{}, auth_failures +{}",
            got.0, got.1, got.2
        );
        assert_eq!(
            got,
            (delivered, rejected, 0),
            "{what}: (delivered, inner_source_rejected, auth_failures)"
        );
    }
    Ok(())
}
