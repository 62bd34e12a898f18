//! Self-test of the harness, without any agent: topologies come up and go
//! away (also on panic), both underlays carry traffic, a cut is a cut, loss
//! rules lose, and the helper binary streams, captures and resends.
//!
//! ```text
//!   pair (2 hosts):                       lan (3 hosts):
//!
//!   ┌─────── h1 ───────┐                  ┌── h1 ──┐ ┌── h2 ──┐ ┌── h3 ──┐
//!   │ ua 192.0.2.1     │── veth A ──┐     │ ua  ub │ │ ua  ub │ │ ua  ub │
//!   │ ub 198.51.100.1  │── veth B ─┐│     └─┬────┬─┘ └─┬────┬─┘ └─┬────┬─┘
//!   └──────────────────┘           ││     ┌─┴────┴─────┴────┴─────┴────┴─┐
//!   ┌─────── h2 ───────┐           ││     │ sw:  lana (A)      lanb (B)   │
//!   │ ua 192.0.2.2     │───────────┘│     └───────────────────────────────┘
//!   │ ub 198.51.100.2  │────────────┘
//!   └──────────────────┘
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use von_tests::iperf::iperf3_on_port;
use von_tests::{Netns, Ping, Result, Tool, Topology, Underlay};

const TOOL: &str = env!("CARGO_BIN_EXE_von-e2e-tool");

fn underlay_ping(
    topo: &Topology,
    from: usize,
    to: usize,
    u: Underlay,
    count: u32,
) -> Result<von_tests::PingReport> {
    Ping::new(topo.host(to).underlay_addr(u), count)
        .interval(Duration::from_millis(50))
        .wait(1)
        .run(topo.host(from).ns())
}

#[test]
fn lan_of_three_comes_up_carries_both_underlays_and_goes_away() -> Result<()> {
    if !von_tests::e2e_enabled("harness lan")? {
        return Ok(());
    }
    let topo = Topology::new(3)?;
    let names: Vec<String> = topo
        .hosts()
        .iter()
        .map(|h| h.ns().name().to_owned())
        .collect();
    let switch = topo
        .switch()
        .expect("3 hosts use a switch")
        .name()
        .to_owned();
    for name in names.iter().chain([&switch]) {
        assert!(Netns::exists(name)?, "{name} should exist");
    }
    for (from, to) in [(1, 2), (1, 3), (2, 3), (3, 1)] {
        for u in Underlay::BOTH {
            let r = underlay_ping(&topo, from, to, u, 3)?;
            assert_eq!(
                (r.transmitted, r.received),
                (3, 3),
                "h{from}->h{to} on {u}:\n{}",
                r.output
            );
        }
    }
    drop(topo);
    for name in names.iter().chain([&switch]) {
        assert!(!Netns::exists(name)?, "{name} should be gone");
    }
    Ok(())
}

#[test]
fn a_cut_loses_that_underlay_only_until_restored() -> Result<()> {
    if !von_tests::e2e_enabled("harness cut")? {
        return Ok(());
    }
    let topo = Topology::new(2)?;
    topo.host(1).cut(Underlay::A)?;
    // With its interface down h1 has no route to 192.0.2.0/24 at all.
    let err = underlay_ping(&topo, 1, 2, Underlay::A, 3).expect_err("A is cut");
    assert!(err.to_string().contains("Network is unreachable"), "{err}");
    let b = underlay_ping(&topo, 1, 2, Underlay::B, 3)?;
    assert_eq!(b.received, 3, "B is not:\n{}", b.output);
    topo.host(1).restore(Underlay::A)?;
    let a = underlay_ping(&topo, 1, 2, Underlay::A, 3)?;
    assert_eq!(a.received, 3, "A is back:\n{}", a.output);

    // The same for everyone at once, on a LAN.
    let lan = Topology::new(3)?;
    lan.cut_all(Underlay::B)?;
    assert!(
        underlay_ping(&lan, 2, 3, Underlay::B, 2).is_err(),
        "B is cut"
    );
    assert_eq!(underlay_ping(&lan, 2, 3, Underlay::A, 2)?.received, 2);
    lan.restore_all(Underlay::B)?;
    assert_eq!(underlay_ping(&lan, 2, 3, Underlay::B, 2)?.received, 2);
    Ok(())
}

#[test]
fn namespaces_are_removed_when_a_test_panics() -> Result<()> {
    if !von_tests::e2e_enabled("harness panic cleanup")? {
        return Ok(());
    }
    let mut names = Vec::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let topo = Topology::new(3).expect("topology");
        names = topo
            .hosts()
            .iter()
            .map(|h| h.ns().name().to_owned())
            .collect();
        names.push(topo.switch().expect("switch").name().to_owned());
        panic!("a failing test");
    }));
    assert!(outcome.is_err());
    assert_eq!(names.len(), 4);
    for name in &names {
        assert!(!Netns::exists(name)?, "{name} outlived the panic");
    }
    Ok(())
}

#[test]
fn loss_rule_drops_its_share_of_udp() -> Result<()> {
    if !von_tests::e2e_enabled("harness loss")? {
        return Ok(());
    }
    let _heavy = von_tests::heavy();
    let topo = Topology::new(2)?;
    let (h1, h2) = (topo.host(1), topo.host(2));
    // iperf3 UDP to port 4789 is what the rule matches.
    h2.add_loss(Underlay::A, 30)?;
    // The control connection on 4789 is TCP: the rule leaves it alone.
    let r = iperf3_on_port(
        h2.ns(),
        h2.underlay_addr(Underlay::A),
        4789,
        h1.ns(),
        &["-u", "-b", "5M", "-l", "1000", "-t", "3"],
        Duration::from_secs(3),
    )?;
    let packets = r.packets.expect("udp") as f64;
    let lost = r.lost_packets.expect("udp") as f64;
    let share = lost / packets;
    assert!(
        (0.2..0.4).contains(&share),
        "30 % rule lost {lost} of {packets}"
    );
    h2.clear_loss()?;
    let r = iperf3_on_port(
        h2.ns(),
        h2.underlay_addr(Underlay::A),
        4789,
        h1.ns(),
        &["-u", "-b", "5M", "-l", "1000", "-t", "2"],
        Duration::from_secs(2),
    )?;
    assert_eq!(r.lost_packets, Some(0), "rule cleared");
    Ok(())
}

#[test]
fn tool_streams_captures_and_resends() -> Result<()> {
    if !von_tests::e2e_enabled("harness tool")? {
        return Ok(());
    }
    let tool = Tool::new(TOOL);
    let topo = Topology::new(2)?;
    let (h1, h2) = (topo.host(1), topo.host(2));

    let bytes = 20 << 20;
    let listen = (h2.underlay_addr(Underlay::B), 7000).into();
    let got = tool.stream(
        h2.ns(),
        listen,
        h1.ns(),
        99,
        bytes,
        Duration::from_secs(120),
    )?;
    assert_eq!(got.received, bytes);
    assert_eq!(got.first_mismatch, None);
    assert_eq!(got.sha256, von_tests::stream::expected_sha256(99, bytes));

    // A hand-made UDP datagram h1 -> h2:4789 on A, captured on h2.
    let packet = von_tests::packet::udp(
        h1.underlay_addr(Underlay::A),
        40000,
        h2.underlay_addr(Underlay::A),
        4789,
        &[0xab; 600],
    );
    let mut capture = tool.start_capture(h2.ns(), h1.underlay_addr(Underlay::A), 4789, 500)?;
    let mut seen = None;
    for _ in 0..50 {
        tool.send_raw(h1.ns(), &packet)?;
        std::thread::sleep(Duration::from_millis(100));
        if !capture.running() {
            seen = Some(tool.captured(capture)?);
            break;
        }
    }
    assert_eq!(seen.as_deref(), Some(&packet[..]), "captured what was sent");
    Ok(())
}
