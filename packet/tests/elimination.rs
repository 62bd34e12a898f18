//! Issue 15: frame elimination counters per sender, in IEEE 802.1CB's
//! terms, driven through the twins' fault injectors. Each test sends more
//! than a window's worth of packets after the fault, so every gap has left
//! the window and `lost` is final.

use std::sync::Arc;
use std::time::Instant;

use von_crypto::MemberId;
use von_crypto::frame::{HEADER_LEN, TAG_LEN};
use von_crypto::window::WINDOW_SIZE;
use von_crypto::{Cipher, Epoch, Flags, FrameKey, FrameType, GroupKey, Header};
use von_packet::SenderCountersSnapshot;
use von_packet::twin::{self, TwinNet, address, ipv4_packet};

const FAST: u64 = 10_000_000_000;
/// More than a window, so gaps of the first packets are pushed out.
const N: u64 = WINDOW_SIZE + 2_000;

/// h2's elimination counters for sender h1.
fn from_h1(net: &TwinNet) -> SenderCountersSnapshot {
    let peers = net.hosts[1].pipeline.inbound.health().peers(Instant::now());
    peers
        .iter()
        .find(|p| p.id == MemberId(1))
        .expect("h1 is h2's peer")
        .frames
}

/// h1 sends packets `from..to` to h2, stepping the wire every 16; `fault`
/// may change the injectors before each packet is sent.
fn send(net: &mut TwinNet, from: u64, to: u64, mut fault: impl FnMut(&mut TwinNet, u64)) {
    let t0 = Instant::now();
    for i in from..to {
        fault(net, i);
        let mut p = ipv4_packet(address(0), address(1), 40, 0);
        p[20..28].copy_from_slice(&i.to_be_bytes());
        net.send(t0, 0, &p).expect("sent");
        if i % 16 == 15 {
            net.step(t0);
        }
    }
    net.step(t0);
}

#[test]
fn a_clean_run_passes_everything_and_discards_one_copy_each() {
    let mut net = TwinNet::new(2, FAST, 1);
    send(&mut net, 0, 1_000, |_, _| {});
    let f = from_h1(&net);
    let want = SenderCountersSnapshot {
        passed: 1_000,
        discarded: 1_000,
        ..Default::default()
    };
    assert_eq!(f, want);
}

#[test]
fn loss_on_one_underlay_is_discarded_less_never_lost() {
    let mut net = TwinNet::new(2, FAST, 2);
    net.faults[twin::A].drop_pct = 30;
    send(&mut net, 0, N, |_, _| {});
    let dropped = net.faults[twin::A].done.dropped;
    let f = from_h1(&net);
    assert!(dropped > 0);
    assert_eq!((f.passed, f.lost, f.rogue, f.resets), (N, 0, 0, 0), "{f:?}");
    assert_eq!(
        f.discarded,
        N - dropped,
        "B's copy of every frame A lost is the one passed"
    );
    assert!(f.discarded > 0);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!(
        c.duplicates, f.discarded,
        "one sender: the VON's figure is h1's"
    );
}

#[test]
fn the_same_frames_lost_on_every_underlay_are_lost_exactly() {
    let mut net = TwinNet::new(2, FAST, 3);
    // Every 97th of the first 2000 packets is lost on both underlays.
    let gone = |i: u64| i < 2_000 && i % 97 == 5;
    let expected = (0..2_000).filter(|&i| gone(i)).count() as u64;
    let both = |net: &mut TwinNet, i: u64| {
        for u in [twin::A, twin::B] {
            net.faults[u].down = gone(i);
        }
    };
    send(&mut net, 0, 2_000, both);
    let f = from_h1(&net);
    assert_eq!(f.lost, 0, "the gaps are still inside the window: {f:?}");
    send(&mut net, 2_000, N, both);
    let f = from_h1(&net);
    assert_eq!(f.lost, expected, "{f:?}");
    assert_eq!((f.passed, f.discarded), (N - expected, N - expected));
    assert_eq!((f.out_of_order, f.rogue, f.resets), (0, 0, 0));
    assert_eq!(net.hosts[1].counters.snapshot().delivered, N - expected);
}

#[test]
fn reordering_is_out_of_order_and_loses_nothing() {
    let mut net = TwinNet::new(2, FAST, 4);
    net.faults[twin::B].down = true;
    net.faults[twin::A].reorder_pct = 10;
    send(&mut net, 0, N, |_, _| {});
    let reordered = net.faults[twin::A].done.reordered;
    let f = from_h1(&net);
    assert!(f.out_of_order > 0, "{f:?}");
    assert!(f.out_of_order <= reordered, "{f:?}, {reordered} reordered");
    assert_eq!((f.passed, f.lost, f.discarded), (N, 0, 0), "{f:?}");
}

#[test]
fn a_sender_restart_is_one_reset_and_no_loss() {
    let mut net = TwinNet::new(2, FAST, 5);
    send(&mut net, 0, 100, |_, _| {});
    net.restart(0, 2);
    net.prove(Instant::now());
    send(&mut net, 100, 200, |_, _| {});
    let f = from_h1(&net);
    assert_eq!((f.resets, f.passed, f.lost), (1, 200, 0), "{f:?}");
    assert_eq!(net.hosts[1].delivered.len(), 200);
}

#[test]
fn gaps_still_open_at_a_restart_are_lost_then() {
    let mut net = TwinNet::new(2, FAST, 6);
    send(&mut net, 0, 100, |net, i| {
        for u in [twin::A, twin::B] {
            net.faults[u].down = i == 50;
        }
    });
    net.faults[twin::A].down = false;
    net.faults[twin::B].down = false;
    assert_eq!(from_h1(&net).lost, 0);
    net.restart(0, 2);
    net.prove(Instant::now());
    let f = from_h1(&net);
    assert_eq!((f.resets, f.lost), (1, 1), "{f:?}");
}

#[test]
fn a_forgery_moves_no_authenticated_counter_but_rogue_is_counted_before_the_aead() {
    let mut net = TwinNet::new(2, FAST, 7);
    send(&mut net, 0, N, |_, _| {});
    let key = FrameKey::new(&twin::group_key());
    // A header as h1 would write it, with no valid tag behind it.
    let forged = |seq: u64| {
        let header = Header {
            on_id: twin::ON_ID,
            frame_type: FrameType::Data,
            flags: Flags::new(key.cipher()),
            sender: MemberId(1),
            epoch: twin::EPOCH,
            seq,
        };
        let mut buf = vec![0u8; HEADER_LEN + 40 + TAG_LEN];
        header.emit(&mut buf[..HEADER_LEN]).expect("room");
        buf
    };
    let incarnation = 1u64 << von_crypto::sequence::COUNTER_BITS;
    let before = from_h1(&net);
    // Far ahead: it fails its tag, so the window stays and nothing is lost.
    net.inject_raw(twin::A, 1, forged(incarnation + 100 * WINDOW_SIZE));
    net.step(Instant::now());
    assert_eq!(from_h1(&net), before);
    assert_eq!(net.hosts[1].counters.snapshot().auth_failures, 1);
    // Behind the window: refused before any AEAD work, so it is rogue
    // (docs/status.md says so: rogue and discarded are pre-AEAD).
    net.inject_raw(twin::A, 1, forged(incarnation + 20));
    net.step(Instant::now());
    let f = from_h1(&net);
    assert_eq!((f.rogue, f.passed, f.lost), (1, N, 0), "{f:?}");
}

#[test]
fn a_rekey_is_one_reset_and_gaps_left_under_the_old_key_are_lost_when_it_retires() {
    let mut net = TwinNet::new(2, FAST, 8);
    let install = |net: &TwinNet, host: usize, send: u32, accept: &[u32]| {
        let keys: Vec<_> = accept
            .iter()
            .map(|&e| match e {
                1 => (Epoch(1), twin::group_key()),
                _ => (
                    Epoch(e),
                    GroupKey::new(Cipher::ChaCha20Poly1305, [e as u8; 32]),
                ),
            })
            .collect();
        let snap = twin::snapshot(2, host, Epoch(send), &keys);
        net.hosts[host].snapshot.store(Arc::new(snap));
    };
    // Packet 50 is lost on both underlays, under epoch 1.
    send(&mut net, 0, 100, |net, i| {
        for u in [twin::A, twin::B] {
            net.faults[u].down = i == 50;
        }
    });
    // Prepare (h2 accepts both), then h1 commits to epoch 2.
    install(&net, 1, 1, &[1, 2]);
    install(&net, 0, 2, &[1, 2]);
    send(&mut net, 100, 200, |net, _| {
        for u in [twin::A, twin::B] {
            net.faults[u].down = false;
        }
    });
    let f = from_h1(&net);
    assert_eq!(
        (f.resets, f.passed, f.lost),
        (1, 199, 0),
        "epoch 1's gap may still fill: {f:?}"
    );
    // h2 retires epoch 1: its window goes, with the gap that never filled.
    install(&net, 1, 2, &[2]);
    net.hosts[1].pipeline.inbound.handle_timeout(Instant::now());
    let f = from_h1(&net);
    assert_eq!((f.resets, f.lost), (1, 1), "{f:?}");
}
