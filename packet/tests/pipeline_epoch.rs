//! The snapshot swap: an epoch switch without loss, a member refused the
//! moment it leaves the view, and sequence numbers never reused.

use std::sync::Arc;
use std::time::Instant;

use von_crypto::frame::field;
use von_crypto::{Cipher, Epoch, GroupKey};
use von_packet::twin::{self, TwinNet, address, ipv4_packet};

const FAST: u64 = 10_000_000_000;

fn key(epoch: u32) -> (Epoch, GroupKey) {
    if epoch == 1 {
        (Epoch(1), twin::group_key())
    } else {
        (
            Epoch(epoch),
            GroupKey::new(Cipher::ChaCha20Poly1305, [epoch as u8; 32]),
        )
    }
}

fn install(net: &TwinNet, host: usize, send: u32, accept: &[u32]) {
    let keys: Vec<_> = accept.iter().map(|&e| key(e)).collect();
    let snap = twin::snapshot(net.hosts.len(), host, Epoch(send), &keys);
    net.hosts[host].snapshot.store(Arc::new(snap));
}

fn seq_of(frame: &[u8]) -> (u32, u64) {
    let epoch = u32::from_be_bytes(frame[field::EPOCH].try_into().unwrap());
    let seq = u64::from_be_bytes(frame[field::SEQ].try_into().unwrap());
    (epoch, seq)
}

#[test]
fn prepare_then_commit_loses_nothing() {
    let mut net = TwinNet::new(3, FAST, 1);
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut burst = |net: &mut TwinNet| {
        for i in 0..100u8 {
            for from in 0..3 {
                let p = ipv4_packet(address(from), address((from + 1) % 3), 40, i);
                net.send(t0, from, &p).unwrap();
            }
        }
        sent += 300;
        net.step(t0);
    };
    burst(&mut net);
    // Prepare: everyone accepts 1 and 2, still sends under 1.
    for h in 0..3 {
        install(&net, h, 1, &[1, 2]);
    }
    burst(&mut net);
    // Commit one member at a time: mixed epochs in flight are all accepted.
    install(&net, 0, 2, &[1, 2]);
    burst(&mut net);
    install(&net, 1, 2, &[1, 2]);
    install(&net, 2, 2, &[1, 2]);
    burst(&mut net);
    // Grace over: only epoch 2.
    for h in 0..3 {
        install(&net, h, 2, &[2]);
    }
    burst(&mut net);
    let delivered: u64 = net
        .hosts
        .iter()
        .map(|h| h.counters.snapshot().delivered)
        .sum();
    let replays: u64 = net
        .hosts
        .iter()
        .map(|h| h.counters.snapshot().replays)
        .sum();
    assert_eq!((delivered, replays), (sent, 0));
    // Windows of the retired epoch are forgotten.
    let h1 = &net.hosts[1].pipeline.inbound;
    assert!(h1.receivers().all(|(_, e)| e == Epoch(2)));
}

#[test]
fn after_the_grace_window_the_old_epoch_is_refused_unopened() {
    let mut net = TwinNet::new(2, FAST, 1);
    install(&net, 1, 2, &[2]);
    net.send(
        Instant::now(),
        0,
        &ipv4_packet(address(0), address(1), 40, 0),
    )
    .unwrap();
    net.step(Instant::now());
    let c = net.hosts[1].counters.snapshot();
    assert_eq!((c.unknown_epoch, c.aead_opens, c.delivered), (2, 0, 0));
}

#[test]
fn a_member_left_out_of_the_view_is_refused_at_once() {
    let mut net = TwinNet::new(3, FAST, 1);
    let t0 = Instant::now();
    net.send(t0, 2, &ipv4_packet(address(2), address(0), 40, 0))
        .unwrap();
    net.step(t0);
    assert_eq!(net.hosts[0].counters.snapshot().delivered, 1);
    // Host 0's new view has only members 1 and 2 (ids 1, 2); member 3 still
    // holds the key and keeps sending.
    let snap = twin::snapshot(2, 0, Epoch(1), &[key(1)]);
    net.hosts[0].snapshot.store(Arc::new(snap));
    net.send(t0, 2, &ipv4_packet(address(2), address(0), 40, 1))
        .unwrap();
    net.step(t0);
    let c = net.hosts[0].counters.snapshot();
    assert_eq!((c.delivered, c.unknown_sender, c.aead_opens), (1, 2, 1));
    assert_eq!(
        net.hosts[0]
            .pipeline
            .inbound
            .receivers()
            .filter(|(sender, _)| *sender == von_crypto::MemberId(3))
            .count(),
        0,
        "its window is gone"
    );
}

#[test]
fn sequences_restart_per_key_and_never_repeat_under_one() {
    let mut net = TwinNet::new(2, FAST, 1);
    net.capture = true;
    let t0 = Instant::now();
    let p = ipv4_packet(address(0), address(1), 40, 0);
    net.send(t0, 0, &p).unwrap();
    net.send(t0, 0, &p).unwrap();
    install(&net, 0, 2, &[1, 2]);
    net.send(t0, 0, &p).unwrap();
    // Back to 1 while it is still accepted: its counter continues.
    install(&net, 0, 1, &[1, 2]);
    net.send(t0, 0, &p).unwrap();
    let seqs: Vec<_> = net
        .captured
        .iter()
        .step_by(2) // A and B carry the same frame
        .map(|(_, _, f)| seq_of(f))
        .collect();
    // The twin's incarnation 1; epoch 1's counter already sealed the
    // keepalives of the twin's start.
    let inc = 1u64 << von_crypto::sequence::COUNTER_BITS;
    let base = seqs[0].1;
    assert_eq!(base >> von_crypto::sequence::COUNTER_BITS, 1, "{seqs:?}");
    assert_eq!(
        seqs,
        vec![(1, base), (1, base + 1), (2, inc), (1, base + 2)]
    );
}
