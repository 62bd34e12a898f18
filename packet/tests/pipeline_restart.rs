//! Issue 11 (1), in the sans-IO core: a receiver restarted at any moment
//! never delivers a frame it could have delivered before, and accepts each
//! sender again once that sender answered the new start's challenge — one
//! keepalive exchange, no timer. The same on a real network, with `kill -9`
//! and a deleted or restored `state_dir`, is `tests/tests/e2e_restart_replay.rs`.

use std::sync::Arc;
use std::time::Instant;

use von_crypto::{Epoch, GroupKey, MemberId};
use von_packet::twin::{self, TwinNet, address, ipv4_packet};

const FAST: u64 = 10_000_000_000;

/// Host 0 sends `n` packets to host 1, captured; returns the captures.
fn send_captured(
    net: &mut TwinNet,
    now: Instant,
    n: u8,
) -> Vec<(von_packet::Underlay, std::net::SocketAddr, Vec<u8>)> {
    net.capture = true;
    net.captured.clear();
    for i in 0..n {
        net.send(now, 0, &ipv4_packet(address(0), address(1), 40, i))
            .expect("sent");
    }
    net.step(now);
    net.capture = false;
    std::mem::take(&mut net.captured)
}

fn replay(
    net: &mut TwinNet,
    frames: &[(von_packet::Underlay, std::net::SocketAddr, Vec<u8>)],
    now: Instant,
) {
    for (u, _, bytes) in frames {
        net.inject_raw(*u, 1, bytes.clone());
    }
    net.step(now);
}

#[test]
fn a_restarted_receiver_delivers_no_recorded_frame_and_accepts_new_ones_after_one_exchange() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    let recorded = send_captured(&mut net, t0, 200);
    assert_eq!(net.hosts[1].counters.snapshot().delivered, 200);

    // kill -9 and `von up` again: nothing of the receive state survives.
    net.restart(1, 2);
    replay(&mut net, &recorded, t0);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!(c.delivered, 0, "recorded frames before any proof: {c:?}");
    assert_eq!(c.unproven, 400, "both copies of 200 refused unopened");
    assert_eq!(c.aead_opens, 0);

    // Data the sender sends before it heard the new challenge is refused
    // too (it cannot be told from a recording)...
    let early = send_captured(&mut net, t0, 3);
    assert_eq!(net.hosts[1].counters.snapshot().delivered, 0);
    assert_eq!(early.len(), 6);

    // ...then one exchange: the receiver's round carries its challenge, the
    // sender answers at once (no timer), the receiver floors it.
    let t1 = t0 + std::time::Duration::from_millis(1);
    assert!(
        net.keepalives(t1) > 0,
        "the restarted host challenges at once"
    );
    net.step(t1);
    assert!(net.keepalives(t1) > 0, "the sender answers at once");
    net.step(t1);
    assert!(net.hosts[1].pipeline.inbound.proven(MemberId(1)));

    // New traffic is accepted; every recording, old or from before the
    // proof, is stale.
    send_captured(&mut net, t1, 10);
    replay(&mut net, &recorded, t1);
    replay(&mut net, &early, t1);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!(c.delivered, 10, "{c:?}");
    assert_eq!(c.stale, 406, "{c:?}");
    assert_eq!(c.aead_opens, 10, "stale frames cost no decryption");
}

#[test]
fn an_older_sender_incarnation_stays_refused_after_the_receiver_restarts() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    let old = send_captured(&mut net, t0, 50);
    // The sender restarts (a newer incarnation): its old frames are too old
    // for the running receiver...
    net.restart(0, 5);
    net.prove(t0);
    send_captured(&mut net, t0, 5);
    replay(&mut net, &old, t0);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!(c.delivered, 55);
    assert_eq!(c.too_old, 100);
    // ...and stay refused after the receiver restarts and is answered by
    // incarnation 5: an older incarnation is below any floor it gives.
    net.restart(1, 6);
    net.prove(t0);
    replay(&mut net, &old, t0);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!((c.delivered, c.stale), (0, 100), "{c:?}");
}

#[test]
fn a_rekey_after_the_proof_needs_no_new_one() {
    let mut net = TwinNet::new(2, FAST, 1);
    let t0 = Instant::now();
    net.restart(1, 2);
    net.prove(t0);
    // Epoch 2 arrives (prepare then commit): a counter the sender opens
    // after answering is new to the receiver.
    let k2 = (
        Epoch(2),
        GroupKey::new(von_crypto::Cipher::Aes256Gcm, [3; 32]),
    );
    let k1 = (twin::EPOCH, twin::group_key());
    for (i, send) in [(1, Epoch(2)), (0, Epoch(2))] {
        let snap = twin::snapshot(2, i, send, &[k1.clone(), k2.clone()]);
        net.hosts[i].snapshot.store(Arc::new(snap));
    }
    send_captured(&mut net, t0, 20);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!((c.delivered, c.unproven, c.stale), (20, 0, 0), "{c:?}");
}
