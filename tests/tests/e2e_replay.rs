//! Issue 4, test 7: a frame captured on the underlay and sent again is not
//! delivered, and is counted as a replay. h2 captures one of h1's frames on
//! A (AF_PACKET, in h2's namespace); after both copies were taken, h1's
//! namespace sends the captured IPv4 packet again, byte for byte, on A and
//! then on B.
//!
//! ```text
//!  ┌─────────── h1 ───────────┐                ┌─────────── h2 ───────────┐
//!  │ ping -s 1100 ─► von-grid │                │ von-grid 100.64.1.2      │
//!  │ [von up]                 │                │ [von up]                 │
//!  │ ua 192.0.2.1 ────────────┼─── veth A ─────┼─► ua  ◄── capture (1)    │
//!  │ ub 198.51.100.1 ─────────┼─── veth B ─────┼── ub                     │
//!  │ send-raw (2) ──► same packet again        │                          │
//!  └──────────────────────────┘                └──────────────────────────┘
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use von_tests::{Ping, Result, Tool, Topology, UNDERLAY_PORT, Underlay, VonCounters, VonSpec};

#[test]
fn a_captured_frame_sent_again_is_counted_as_a_replay_and_not_delivered() -> Result<()> {
    if !von_tests::e2e_enabled("e2e replay")? {
        return Ok(());
    }
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let (h1, h2) = (topo.host(1), topo.host(2));

    // (1) Capture a large frame (an echo request of 1100 bytes) on A.
    let mut capture =
        tool.start_capture(h2.ns(), h1.underlay_addr(Underlay::A), UNDERLAY_PORT, 1000)?;
    let r = Ping::new(grid.address(2), 3)
        .size(1100)
        .interval(Duration::from_millis(200))
        .run(h1.ns())?;
    assert_eq!(r.received, 3, "{}", r.output);
    assert!(wait_exit(&mut capture), "the capture saw no frame in 20 s");
    let packet = tool.captured(capture)?;

    // (2) Resend it, once on A as captured, then once on B. The frame (UDP
    // payload) is untouched; the UDP checksum is zeroed (no checksum, valid
    // in IPv4), because veth offload leaves it unfinished in the capture.
    let on_a = readdress(
        &packet,
        h1.underlay_addr(Underlay::A),
        h2.underlay_addr(Underlay::A),
    );
    let on_b = readdress(
        &packet,
        h1.underlay_addr(Underlay::B),
        h2.underlay_addr(Underlay::B),
    );
    let agent = topo.agent(2);
    let mut previous = agent.counters("grid")?;
    for (underlay, bytes) in [(Underlay::A, on_a), (Underlay::B, on_b)] {
        tool.send_raw(h1.ns(), &bytes)?;
        // The agent counts the frame's arrival (`rx_frames`) before its
        // verdict: wait for both, or a reading between the two would show a
        // frame received and judged nowhere.
        let now = von_tests::wait_for(
            "the replayed frame to be received and judged",
            Duration::from_secs(10),
            || {
                let now = agent.counters("grid")?;
                let (received, judged) = (
                    previous.delta_on(&now, underlay, "rx_frames")?,
                    previous.judged(&now)?,
                );
                Ok(if received >= 1 && judged >= received {
                    Ok(now)
                } else {
                    Err(format!("{received} frame(s) received, {judged} judged"))
                })
            },
        )?;
        report(underlay, &previous, &now)?;
        assert_eq!(
            previous.delta_on(&now, underlay, "rx_frames")?,
            1,
            "frames received on {underlay}"
        );
        assert_eq!(
            previous.delta(&now, "replays")?,
            1,
            "replays after the resend on {underlay}"
        );
        assert_eq!(
            previous.delta(&now, "delivered")?,
            0,
            "delivered after the resend on {underlay}"
        );
        assert_eq!(
            previous.delta(&now, "duplicates")?,
            0,
            "a replay is not a duplicate"
        );
        assert_eq!(
            previous.delta(&now, "auth_failures")?,
            0,
            "the replay is authentic, only old"
        );
        assert_eq!(
            previous.delta(&now, "aead_opens")?,
            0,
            "a replay costs no decryption"
        );
        previous = now;
    }
    Ok(())
}

fn report(underlay: Underlay, before: &VonCounters, after: &VonCounters) -> Result<()> {
    eprintln!(
        "replay on {underlay}: rx {} frame(s); replays +{}, delivered +{}, duplicates +{}, aead opens +{}",
        before.delta_on(after, underlay, "rx_frames")?,
        before.delta(after, "replays")?,
        before.delta(after, "delivered")?,
        before.delta(after, "duplicates")?,
        before.delta(after, "aead_opens")?,
    );
    Ok(())
}

/// Waits up to 20 s for the capture to finish; true when it did.
fn wait_exit(capture: &mut von_tests::process::Background) -> bool {
    for _ in 0..400 {
        if !capture.running() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn readdress(packet: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    von_tests::packet::readdress_udp(packet, src, dst)
        .expect("the capture holds an IPv4/UDP packet")
}

/// Issue 11 (5): a zero-length datagram on an underlay port is counted as
/// malformed (it used to be read and counted nowhere), and the agent runs on.
#[test]
fn a_zero_length_datagram_is_counted_as_malformed() -> Result<()> {
    if !von_tests::e2e_enabled("e2e zero-length datagram")? {
        return Ok(());
    }
    let tool = Tool::new(env!("CARGO_BIN_EXE_von-e2e-tool"));
    let mut topo = Topology::new(2)?;
    let grid = VonSpec::new("grid", 7, 1, &[1, 2]);
    topo.start(std::slice::from_ref(&grid))?;
    let (h1, h2) = (topo.host(1), topo.host(2));
    let malformed = |status: &von_tests::Status| {
        status.json()["underlays"]["a"]["counters"]["malformed"]
            .as_u64()
            .expect("underlays.a.counters.malformed in von status --json")
    };
    let before = malformed(&topo.agent(2).status()?);
    let empty = von_tests::packet::udp(
        h1.underlay_addr(Underlay::A),
        UNDERLAY_PORT,
        h2.underlay_addr(Underlay::A),
        UNDERLAY_PORT,
        &[],
    );
    tool.send_raw(h1.ns(), &empty)?;
    let after = von_tests::wait_for(
        "the zero-length datagram to be counted",
        Duration::from_secs(10),
        || {
            let now = malformed(&topo.agent(2).status()?);
            Ok(if now > before {
                Ok(now)
            } else {
                Err(format!("underlays.a.counters.malformed still {now}"))
            })
        },
    )?;
    eprintln!("zero-length datagram: underlays.a.counters.malformed {before} -> {after}");
    assert_eq!(after - before, 1);
    let r = Ping::new(grid.address(2), 3).run(h1.ns())?;
    assert_eq!(r.received, 3, "the agent runs on: {}", r.output);
    Ok(())
}
