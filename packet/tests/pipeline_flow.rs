//! The pipeline core end to end in memory: policy, doubling over A and B,
//! delivery, broadcast, shaping, and counters that add up exactly.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use von_packet::twin::{self, TwinNet, address, endpoints, ipv4_packet};
use von_packet::{Action, DropReason, PACKET_OFFSET};

const FAST: u64 = 10_000_000_000;

#[test]
fn a_clean_run_adds_up_exactly() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    let mut sent = Vec::new();
    for i in 0..1_000u32 {
        let p = ipv4_packet(address(0), address(1), 64 + (i as usize % 1_300), i as u8);
        assert_eq!(net.send(t0, 0, &p), Ok(2), "one target, on A and on B");
        sent.push(p);
    }
    net.step(t0);
    assert_eq!(
        net.hosts[1].delivered, sent,
        "every packet once, in order, byte for byte"
    );
    let rx = net.hosts[1].counters.snapshot();
    let tx = net.hosts[0].counters.snapshot();
    assert_eq!(tx.tx_packets, 1_000);
    assert_eq!((rx.delivered, rx.duplicates, rx.replays), (1_000, 1_000, 0));
    assert_eq!((rx.on("a").rx_frames, rx.on("b").rx_frames), (1_000, 1_000));
    assert_eq!(rx.aead_opens, 1_000, "the second copy costs no decryption");
    assert_eq!(rx.auth_failures + rx.malformed + rx.too_old, 0);
}

#[test]
fn send_names_both_underlays_of_the_destination() {
    let mut net = TwinNet::new(3, FAST, 1);
    let host = &mut net.hosts[0];
    let p = ipv4_packet(address(0), address(2), 100, 0);
    let mut buf = vec![0u8; 2_000];
    buf[PACKET_OFFSET..PACKET_OFFSET + p.len()].copy_from_slice(&p);
    match host
        .pipeline
        .handle_outbound(Instant::now(), &mut buf, p.len())
    {
        Action::Send { frame, to } => {
            assert_eq!(to, &[endpoints(2)]);
            assert_eq!(frame.len(), p.len() + 40);
            assert_eq!(&frame[..4], &7u32.to_be_bytes(), "ON id first");
        }
        other => panic!("expected a send, got {other:?}"),
    }
}

#[test]
fn broadcast_and_multicast_reach_every_other_member() {
    let mut net = TwinNet::new(4, FAST, 1);
    let t0 = Instant::now();
    for dst in [
        Ipv4Addr::new(100, 64, 0, 255),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 251),
    ] {
        let p = ipv4_packet(address(1), dst, 32, 9);
        assert_eq!(
            net.send(t0, 1, &p),
            Ok(6),
            "three others, twice each ({dst})"
        );
    }
    net.step(t0);
    for (i, h) in net.hosts.iter().enumerate() {
        let expected = if i == 1 { 0 } else { 3 };
        assert_eq!(h.delivered.len(), expected, "host {i}");
        let c = h.counters.snapshot();
        assert_eq!(c.duplicates, expected as u64, "host {i}");
    }
}

#[test]
fn policy_refuses_foreign_sources_and_destinations() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    let cases = [
        (
            ipv4_packet(address(1), address(1), 10, 0),
            DropReason::SourceNotSelf,
        ),
        (
            ipv4_packet(address(0), Ipv4Addr::new(100, 64, 0, 9), 10, 0),
            DropReason::DestinationNotMember,
        ),
        (
            ipv4_packet(address(0), Ipv4Addr::new(8, 8, 8, 8), 10, 0),
            DropReason::DestinationNotMember,
        ),
        (
            ipv4_packet(address(0), address(0), 10, 0),
            DropReason::NoOtherMember,
        ),
        (vec![0x70; 40], DropReason::NotIp),
        (vec![0x45; 10], DropReason::NotIp),
        (Vec::new(), DropReason::NotIp),
    ];
    for (p, reason) in &cases {
        assert_eq!(net.send(t0, 0, p), Err(*reason));
    }
    let c = net.hosts[0].counters.snapshot();
    assert_eq!(c.policy_drops, cases.len() as u64);
    assert_eq!(c.tx_packets, 0);
}

#[test]
fn a_broadcast_with_nobody_else_is_refused() {
    let mut net = TwinNet::new(1, FAST, 1);
    let p = ipv4_packet(address(0), Ipv4Addr::new(100, 64, 0, 255), 10, 0);
    assert_eq!(
        net.send(Instant::now(), 0, &p),
        Err(DropReason::NoOtherMember)
    );
}

#[test]
fn a_packet_that_does_not_fit_the_buffer_is_too_big() {
    let mut net = TwinNet::new(2, FAST, 1);
    let p = ipv4_packet(address(0), address(1), 100, 0);
    let mut buf = vec![0u8; PACKET_OFFSET + p.len() + 15];
    buf[PACKET_OFFSET..PACKET_OFFSET + p.len()].copy_from_slice(&p);
    let a = net.hosts[0]
        .pipeline
        .handle_outbound(Instant::now(), &mut buf, p.len());
    assert_eq!(a, Action::Drop(DropReason::TooBig));
    assert_eq!(net.hosts[0].counters.snapshot().too_big, 1);
}

#[test]
fn the_contracted_rate_is_enforced_and_never_borrowed() {
    // 1 Mbit/s = 125,000 bytes/s; the twin's burst is rate/8 bytes = 1 s
    // worth (125 packets), and the shaping queue holds as much again.
    let mut net = TwinNet::new(2, 1_000_000, 1);
    let t0 = Instant::now();
    let p = ipv4_packet(address(0), address(1), 980, 0); // 1,000 bytes
    // Offer 4 Mbit/s for 5 s: a packet every 2 ms.
    for i in 0..2_500u64 {
        let now = t0 + Duration::from_millis(i * 2);
        net.release(now);
        let _ = net.send(now, 0, &p);
    }
    let end = t0 + Duration::from_millis(5_000);
    net.release(end);
    net.step(end);
    // Burst (125) + 5 s at the rate (625), within one packet.
    let by_the_end = net.hosts[1].counters.snapshot().delivered;
    assert!(
        (749..=751).contains(&by_the_end),
        "delivered {by_the_end} in 5 s"
    );
    // The queue (125 packets) drains afterwards at the rate; the rest was dropped.
    net.release(end + Duration::from_secs(10));
    net.step(end + Duration::from_secs(10));
    let (tx, rx) = (
        net.hosts[0].counters.snapshot(),
        net.hosts[1].counters.snapshot(),
    );
    assert!(
        (874..=876).contains(&rx.delivered),
        "delivered {}",
        rx.delivered
    );
    assert_eq!(tx.rate_drops, 2_500 - rx.delivered);
    assert_eq!(tx.tx_packets, rx.delivered);
}

#[test]
fn a_burst_above_the_bucket_waits_in_order_and_leaves_at_the_rate() {
    // 8 Mbit/s = 1,000,000 bytes/s, burst 1 s (the twin's) = 1,000 packets;
    // the queue holds as much again.
    let mut net = TwinNet::new(2, 8_000_000, 1);
    let t0 = Instant::now();
    let mut sent = Vec::new();
    let mut queued = 0;
    for i in 0..1_500u32 {
        let mut p = ipv4_packet(address(0), address(1), 980, 0);
        p[20..24].copy_from_slice(&i.to_be_bytes());
        if net.send(t0, 0, &p) == Ok(0) {
            queued += 1;
        }
        sent.push(p);
    }
    assert_eq!(queued, 500);
    assert_eq!(net.hosts[0].counters.snapshot().shaped, 500);
    let out = &net.hosts[0].pipeline.outbound;
    // The oldest queued packet may leave once 1,000 bytes have refilled: 1 ms.
    assert_eq!(out.poll_queue(t0), Some(t0 + Duration::from_millis(1)));
    assert_eq!(net.release(t0 + Duration::from_micros(999)), 0);
    assert_eq!(net.release(t0 + Duration::from_millis(250)), 2 * 250);
    net.release(t0 + Duration::from_secs(1));
    net.step(t0 + Duration::from_secs(1));
    assert_eq!(net.hosts[1].delivered, sent, "all of them, in order");
    assert_eq!(net.hosts[0].counters.snapshot().rate_drops, 0);
    assert_eq!(net.hosts[0].pipeline.outbound.poll_queue(t0), None);
}

#[test]
fn a_packet_larger_than_the_burst_is_dropped_not_queued() {
    let mut net = TwinNet::new(2, 8_000, 1); // burst: the twin's floor, 3,000 bytes
    let p = ipv4_packet(address(0), address(1), 3_000, 0);
    assert_eq!(
        net.send(Instant::now(), 0, &p),
        Err(DropReason::RateExceeded)
    );
}

#[test]
fn losing_all_underlays_but_one_loses_no_packet() {
    // 1 to 4 underlays; for each, every underlay in turn is the survivor.
    for k in 1..=von_packet::MAX_UNDERLAYS {
        for survivor in 0..k {
            let mut net = TwinNet::with_underlays(3, k, FAST, 7);
            for i in (0..k).filter(|&i| i != survivor) {
                net.faults[twin::underlay(i)].down = true;
            }
            let t0 = Instant::now();
            for i in 0..500u32 {
                let p = ipv4_packet(address(0), address(1 + (i as usize % 2)), 200, i as u8);
                net.send(t0, 0, &p).unwrap();
            }
            net.step(t0);
            let (c1, c2) = (
                net.hosts[1].counters.snapshot(),
                net.hosts[2].counters.snapshot(),
            );
            let what = format!("{k} underlays, only #{survivor} up");
            assert_eq!(c1.delivered + c2.delivered, 500, "{what}");
            assert_eq!(c1.duplicates + c2.duplicates, 0, "{what}");
            assert_eq!(c1.underlay.len(), k, "{what}");
        }
    }
}

#[test]
fn every_underlay_carries_a_copy_and_all_but_the_first_are_duplicates() {
    for k in 1..=von_packet::MAX_UNDERLAYS {
        let mut net = TwinNet::with_underlays(2, k, FAST, 3);
        let t0 = Instant::now();
        for i in 0..100u32 {
            let sent = net
                .send(t0, 0, &ipv4_packet(address(0), address(1), 64, i as u8))
                .unwrap();
            assert_eq!(sent, k, "one frame per underlay");
        }
        net.step(t0);
        let c = net.hosts[1].counters.snapshot();
        assert_eq!(c.delivered, 100, "{k} underlays");
        assert_eq!(c.duplicates, 100 * (k as u64 - 1), "{k} underlays");
        assert_eq!((c.replays, c.aead_opens), (0, 100), "{k} underlays");
        for (name, u) in &c.underlay {
            assert_eq!(u.rx_frames, 100, "{k} underlays: {name}");
        }
    }
}
