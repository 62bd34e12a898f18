//! Issue 4, test 8: the VON interface's MTU leaves room for the frame, so
//! the largest packet with DF set crosses both underlays whole, and one byte
//! more is refused by the kernel with "message too long", never dropped
//! silently. Checked for the default MTU (grid) and a configured one (med).
//!
//! ```text
//!  ┌────────────── h1 ──────────────┐             ┌────────────── h2 ──────────────┐
//!  │ ping -M do -s N ─► von-grid    │             │ von-grid 100.64.1.2 (default)  │
//!  │                 ─► von-med     │             │ von-med  100.64.2.2 (mtu 1400) │
//!  │ [von up]                       │             │ [von up]                       │
//!  │ ua 192.0.2.1    (mtu 1500) ────┼── veth A ───┼── ua 192.0.2.2                 │
//!  │ ub 198.51.100.1 (mtu 1500) ────┼── veth B ───┼── ub 198.51.100.2              │
//!  └────────────────────────────────┘             └────────────────────────────────┘
//!   outer packet = inner + 40 (frame) + 8 (UDP) + 20 (IPv4) <= 1500
//! ```

use std::time::Duration;

use von_tests::{Ping, Result, Topology, Underlay, VonSpec, link, ping};

/// Frame header and tag, UDP and IPv4 headers around every inner packet.
const OUTER_OVERHEAD: u32 = 40 + 8 + 20;
/// ICMP echo header and IPv4 header inside the inner packet.
const PING_OVERHEAD: u32 = 8 + 20;

#[test]
fn largest_df_ping_passes_and_one_byte_more_is_refused_loudly() -> Result<()> {
    if !von_tests::e2e_enabled("e2e mtu")? {
        return Ok(());
    }
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    let mut med = VonSpec::new("med", 8, 2, &[1, 2]);
    med.mtu = Some(1400);
    topo.start(&[grid.clone(), med.clone()])?;
    let h1 = topo.host(1);
    let underlay_mtu = link(h1.ns(), Underlay::A.interface())?.mtu;

    for von in [&grid, &med] {
        let mtu = link(h1.ns(), &von.interface())?.mtu;
        if let Some(configured) = von.mtu {
            assert_eq!(mtu, u32::from(configured), "{}: configured MTU", von.name);
        }
        assert!(
            mtu + OUTER_OVERHEAD <= underlay_mtu,
            "{}: MTU {mtu} + {OUTER_OVERHEAD} exceeds the underlay's {underlay_mtu}",
            von.name
        );
        let largest = mtu - PING_OVERHEAD;
        let before = [
            topo.agent(1).counters(&von.name)?,
            topo.agent(2).counters(&von.name)?,
        ];

        let fits = Ping::new(von.address(2), 3)
            .size(largest)
            .dont_fragment()
            .interval(Duration::from_millis(100))
            .run(h1.ns())?;
        assert_eq!(
            fits.received, 3,
            "{}: -M do -s {largest} (MTU {mtu}):\n{}",
            von.name, fits.output
        );

        let too_big = ping::ping_raw(
            h1.ns(),
            &Ping::new(von.address(2), 1)
                .size(largest + 1)
                .dont_fragment()
                .wait(1),
        )?;
        let text = format!("{}{}", too_big.stdout, too_big.stderr);
        eprintln!(
            "{}: MTU {mtu}; -s {largest} passed 3/3; -s {}: {}",
            von.name,
            largest + 1,
            text.lines()
                .find(|l| l.contains("too long"))
                .unwrap_or("(no error line)")
        );
        assert!(
            text.contains("message too long"),
            "{}: -s {} was not refused:\n{text}",
            von.name,
            largest + 1
        );

        // ping stops at the first copy of each reply; the second copy of the
        // last request may still be on its way to h2: wait until h2 counted
        // all three on both underlays.
        let after = von_tests::wait_for(
            "h2 to receive every big frame on both underlays",
            Duration::from_secs(10),
            || {
                let now = [
                    topo.agent(1).counters(&von.name)?,
                    topo.agent(2).counters(&von.name)?,
                ];
                let rx = [
                    before[1].delta_on(&now[1], Underlay::A, "rx_frames")?,
                    before[1].delta_on(&now[1], Underlay::B, "rx_frames")?,
                ];
                Ok(if rx.iter().all(|&n| n >= 3) {
                    Ok(now)
                } else {
                    Err(format!("h2 received {rx:?} on (A, B)"))
                })
            },
        )?;
        // The big ones crossed both underlays whole; the refused one never
        // reached the agent.
        for u in Underlay::BOTH {
            assert_eq!(
                before[1].delta_on(&after[1], u, "rx_frames")?,
                3,
                "{}: full-size frames received on {u}",
                von.name
            );
        }
        assert_eq!(
            before[0].delta(&after[0], "tx_packets")?,
            3,
            "{}: h1 sealed",
            von.name
        );
        assert_eq!(
            before[0].delta(&after[0], "too_big")?,
            0,
            "{}: too_big",
            von.name
        );
        assert_eq!(
            before[1].delta(&after[1], "delivered")?,
            3,
            "{}: h2 delivered",
            von.name
        );
    }
    Ok(())
}
