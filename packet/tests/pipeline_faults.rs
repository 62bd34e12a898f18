//! The pipeline under a fault injector: loss, corruption, duplication and
//! reordering on each underlay, with counters that still add up.

use std::collections::HashSet;
use std::time::Instant;

use von_packet::twin::{self, TwinNet, address, ipv4_packet};

const FAST: u64 = 10_000_000_000;
const PACKETS: u32 = 2_000;

fn run(net: &mut TwinNet) -> Vec<Vec<u8>> {
    let t0 = Instant::now();
    let mut sent = Vec::new();
    for i in 0..PACKETS {
        let mut p = ipv4_packet(address(0), address(1), 100, 0);
        p[20..24].copy_from_slice(&i.to_be_bytes());
        net.send(t0, 0, &p).unwrap();
        sent.push(p);
        if i % 16 == 15 {
            net.step(t0);
        }
    }
    net.step(t0);
    sent
}

#[test]
fn independent_loss_on_both_underlays_loses_only_what_both_lost() {
    let mut net = TwinNet::new(2, FAST, 11);
    net.faults[twin::A].drop_pct = 30;
    net.faults[twin::B].drop_pct = 30;
    let sent = run(&mut net);
    let c = net.hosts[1].counters.snapshot();
    let lost_a = net.faults[twin::A].done.dropped;
    let lost_b = net.faults[twin::B].done.dropped;
    // Each packet had two copies: frames that arrived = 2N - lost.
    assert_eq!(
        c.on("a").rx_frames + c.on("b").rx_frames,
        2 * u64::from(PACKETS) - lost_a - lost_b
    );
    // Every arrival is either the first copy (delivered) or the second (duplicate).
    assert_eq!(
        c.delivered + c.duplicates,
        c.on("a").rx_frames + c.on("b").rx_frames
    );
    assert_eq!(c.replays, 0);
    // ~9% of packets lose both copies (0.3²); far fewer than either alone.
    let lost = u64::from(PACKETS) - c.delivered;
    assert!(
        lost < lost_a.min(lost_b) / 2,
        "lost {lost}, A lost {lost_a}, B lost {lost_b}"
    );
    let got: HashSet<_> = net.hosts[1].delivered.iter().collect();
    assert!(got.iter().all(|p| sent.contains(p)));
}

#[test]
fn corrupted_frames_are_refused_and_never_delivered_altered() {
    let mut net = TwinNet::new(2, FAST, 12);
    net.faults[twin::A].corrupt_pct = 25;
    net.faults[twin::B].corrupt_pct = 25;
    let sent = run(&mut net);
    let c = net.hosts[1].counters.snapshot();
    let corrupted = net.faults[twin::A].done.corrupted + net.faults[twin::B].done.corrupted;
    let refused = c.auth_failures + c.malformed + c.unknown_sender + c.unknown_epoch + c.from_self;
    assert!(corrupted > 0);
    // A flipped bit in the header or payload fails somewhere; one in a
    // second copy may be caught earlier as a duplicate or too-old frame.
    assert!(
        refused <= corrupted && refused > corrupted / 2,
        "{refused} of {corrupted}"
    );
    let sent: HashSet<_> = sent.iter().collect();
    for p in &net.hosts[1].delivered {
        assert!(sent.contains(p), "an altered packet was delivered");
    }
    // Both copies corrupted loses the packet: ~6% at 25% each.
    assert!(c.delivered > u64::from(PACKETS) * 85 / 100, "{c:?}");
}

#[test]
fn duplicated_frames_on_one_underlay_are_replays() {
    let mut net = TwinNet::new(2, FAST, 13);
    net.faults[twin::A].duplicate_pct = 20;
    run(&mut net);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!(c.delivered, u64::from(PACKETS));
    assert_eq!(
        c.duplicates,
        u64::from(PACKETS),
        "the other underlay's copy"
    );
    assert_eq!(
        c.replays,
        net.faults[twin::A].done.duplicated,
        "the same underlay's second copy"
    );
}

#[test]
fn reordering_within_the_window_loses_nothing() {
    let mut net = TwinNet::new(2, FAST, 14);
    net.faults[twin::A].reorder_pct = 40;
    net.faults[twin::B].reorder_pct = 40;
    net.faults[twin::B].drop_pct = 50;
    run(&mut net);
    let c = net.hosts[1].counters.snapshot();
    assert!(net.faults[twin::A].done.reordered > 0);
    assert_eq!(c.delivered, u64::from(PACKETS));
    assert_eq!(c.too_old + c.replays, 0);
}

#[test]
fn everything_at_once_never_panics_and_every_frame_is_counted_once() {
    let mut net = TwinNet::new(3, FAST, 15);
    for f in net.faults.values_mut() {
        f.drop_pct = 10;
        f.corrupt_pct = 10;
        f.duplicate_pct = 10;
        f.reorder_pct = 10;
    }
    run(&mut net);
    let c = net.hosts[1].counters.snapshot();
    let outcomes = c.delivered
        + c.duplicates
        + c.replays
        + c.too_old
        + c.auth_failures
        + c.malformed
        + c.unknown_sender
        + c.unknown_epoch
        + c.inner_source_rejected
        + c.from_self
        + c.control_frames
        + c.unproven
        + c.stale;
    // Keepalives included: the twin's start exchanged some.
    let received = c.on("a").rx_frames
        + c.on("b").rx_frames
        + c.on("a").rx_keepalives
        + c.on("b").rx_keepalives;
    assert_eq!(outcomes, received, "{c:?}");
}
