//! Hostile input on the underlay: replays, forgeries, strangers, spoofed
//! inner sources and garbage. Each is refused, counted under its own name,
//! and costs no AEAD work when the header alone condemns it.

use std::time::Instant;

use von_crypto::frame::{HEADER_LEN, TAG_LEN};
use von_crypto::freshness::{Challenge, KeepaliveBody, MAX_BODY_LEN};
use von_crypto::window::WINDOW_SIZE;
use von_crypto::{Epoch, Flags, FrameKey, FrameType, Header, MemberId};
use von_packet::twin::{self, Rng, TwinNet, address, ipv4_packet};
use von_packet::{Action, DropReason};

const FAST: u64 = 10_000_000_000;

/// A frame sealed under the twin key as `sender`, as an insider could make.
fn sealed(sender: u32, epoch: u32, seq: u64, inner: &[u8]) -> Vec<u8> {
    let key = FrameKey::new(&twin::group_key());
    let header = Header {
        on_id: twin::ON_ID,
        frame_type: FrameType::Data,
        flags: Flags::new(key.cipher()),
        sender: MemberId(sender),
        epoch: Epoch(epoch),
        seq,
    };
    let mut buf = vec![0u8; HEADER_LEN + inner.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(inner);
    let n = key.seal_in_place(&header, &mut buf, inner.len()).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn a_captured_frame_resent_is_a_replay_on_either_underlay() {
    let mut net = TwinNet::new(2, FAST, 1);
    net.capture = true;
    let t0 = Instant::now();
    net.send(t0, 0, &ipv4_packet(address(0), address(1), 50, 1))
        .unwrap();
    net.step(t0);
    let captured = net.captured.clone();
    for (u, _, bytes) in &captured {
        net.inject_raw(*u, 1, bytes.clone());
        net.inject_raw(
            if *u == twin::A { twin::B } else { twin::A },
            1,
            bytes.clone(),
        );
    }
    net.step(t0);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!((c.delivered, c.duplicates, c.replays), (1, 1, 4));
    assert_eq!(c.aead_opens, 1);
}

#[test]
fn a_frame_behind_the_window_is_too_old() {
    let mut net = TwinNet::new(2, FAST, 1);
    net.capture = true;
    let t0 = Instant::now();
    let p = ipv4_packet(address(0), address(1), 20, 1);
    net.send(t0, 0, &p).unwrap();
    let (u, _, first) = net.captured[0].clone();
    net.capture = false;
    net.faults[twin::B].down = true;
    for _ in 0..=WINDOW_SIZE {
        net.send(t0, 0, &p).unwrap();
    }
    net.step(t0);
    net.inject_raw(u, 1, first);
    net.step(t0);
    let c = net.hosts[1].counters.snapshot();
    assert_eq!(c.too_old, 1);
    assert_eq!(c.delivered, WINDOW_SIZE + 2);
}

#[test]
fn strangers_and_unknown_epochs_cost_no_decryption() {
    let mut net = TwinNet::new(2, FAST, 1);
    let inner = ipv4_packet(address(0), address(1), 20, 0);
    net.inject_raw(twin::A, 1, sealed(9, 1, 0, &inner)); // not in the view
    net.inject_raw(twin::A, 1, sealed(1, 5, 0, &inner)); // epoch not accepted
    net.inject_raw(twin::B, 1, sealed(2, 1, 0, &inner)); // the receiver's own id
    net.step(Instant::now());
    let c = net.hosts[1].counters.snapshot();
    assert_eq!((c.unknown_sender, c.unknown_epoch, c.from_self), (1, 1, 1));
    assert_eq!(c.aead_opens, 0);
    let strangers = net.hosts[1]
        .pipeline
        .inbound
        .receivers()
        .filter(|&(s, e)| s != MemberId(1) || e != Epoch(1))
        .count();
    assert_eq!(strangers, 0, "no window for any of them");
}

#[test]
fn a_forged_tag_fails_and_never_moves_the_window() {
    let mut net = TwinNet::new(2, FAST, 1);
    let inner = ipv4_packet(address(0), address(1), 20, 0);
    let good = sealed(1, 1, 1 << 40, &inner);
    let mut forged = good.clone();
    *forged.last_mut().unwrap() ^= 0x80;
    // The forgery claims a far-ahead sequence too: if it moved the window,
    // the genuine frame would be too old.
    let mut ahead = sealed(1, 1, (1 << 40) + 1_000_000, &inner);
    ahead[HEADER_LEN] ^= 1;
    for f in [forged, ahead] {
        net.inject_raw(twin::A, 1, f);
    }
    net.inject_raw(twin::B, 1, good);
    net.step(Instant::now());
    let c = net.hosts[1].counters.snapshot();
    assert_eq!((c.auth_failures, c.delivered, c.too_old), (2, 1, 0));
    assert_eq!(net.hosts[1].delivered, vec![inner]);
}

#[test]
fn an_insider_spoofing_another_members_address_is_refused() {
    let mut net = TwinNet::new(3, FAST, 1);
    // Member 1 (id 1) seals a packet claiming to come from member 3's address.
    let spoofed = ipv4_packet(address(2), address(1), 20, 0);
    net.inject_raw(twin::A, 1, sealed(1, 1, 1 << 40, &spoofed));
    let garbage_inner = vec![0xffu8; 30];
    net.inject_raw(twin::A, 1, sealed(1, 1, (1 << 40) + 1, &garbage_inner));
    net.step(Instant::now());
    let c = net.hosts[1].counters.snapshot();
    assert_eq!((c.inner_source_rejected, c.delivered), (2, 0));
}

#[test]
fn garbage_is_counted_never_a_panic() {
    let mut net = TwinNet::new(2, FAST, 1);
    let mut rng = Rng::new(99);
    let datagrams = 20_000u64;
    for i in 0..datagrams {
        let len = (rng.next_u64() % 200) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if i % 2 == 0 && len >= 8 {
            // Half look like ours: right ON id and version/type byte.
            bytes[..4].copy_from_slice(&7u32.to_be_bytes());
            bytes[4] = 0x10;
            bytes[5] = 0;
            bytes[6] = 0;
            bytes[7] = 0;
        }
        net.inject_raw(if i % 3 == 0 { twin::A } else { twin::B }, 1, bytes);
    }
    net.step(Instant::now());
    let c = net.hosts[1].counters.snapshot();
    assert_eq!(c.delivered, 0);
    let refused = c.malformed + c.unknown_sender + c.unknown_epoch + c.auth_failures + c.from_self;
    assert_eq!(refused, datagrams, "{c:?}");
    assert!(c.aead_opens <= c.auth_failures);
}

/// A keepalive from member 1 under epoch 1 with `body` as plaintext.
fn keepalive(seq: u64, body: &[u8]) -> Vec<u8> {
    let key = FrameKey::new(&twin::group_key());
    let header = Header {
        on_id: twin::ON_ID,
        frame_type: FrameType::Keepalive,
        flags: Flags::new(key.cipher()),
        sender: MemberId(1),
        epoch: Epoch(1),
        seq,
    };
    let mut buf = vec![0u8; HEADER_LEN + body.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
    let n = key.seal_in_place(&header, &mut buf, body.len()).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn a_keepalive_authenticates_but_delivers_nothing() {
    let mut net = TwinNet::new(2, FAST, 1);
    let before = net.hosts[1].counters.snapshot();
    let mut body = [0u8; MAX_BODY_LEN];
    let len = KeepaliveBody::new(Challenge([9; 16]), None)
        .emit(&mut body)
        .unwrap();
    let mut frame = keepalive(1 << 40, &body[..len]);
    let action = net.hosts[1]
        .pipeline
        .handle_inbound(Instant::now(), twin::A, &mut frame);
    assert_eq!(action, Action::Drop(DropReason::NotData));
    let c = net.hosts[1].counters.snapshot();
    // Keepalive opens are counted apart, so data's `aead_opens` stays exact.
    assert_eq!(
        (
            c.control_frames - before.control_frames,
            c.keepalive_opens - before.keepalive_opens,
            c.aead_opens,
            c.delivered
        ),
        (1, 1, 0, 0)
    );
    assert_eq!(
        (
            c.on("a").rx_keepalives - before.on("a").rx_keepalives,
            c.on("a").rx_frames
        ),
        (1, 0)
    );
    // One without a body (an agent from before freshness proofs) or with a
    // bad one authenticates but is refused as malformed.
    for (i, bad) in [&[][..], &[2u8; 36][..], &body[..len - 1]]
        .into_iter()
        .enumerate()
    {
        let mut frame = keepalive((1 << 40) + 1 + i as u64, bad);
        let action = net.hosts[1]
            .pipeline
            .handle_inbound(Instant::now(), twin::A, &mut frame);
        assert_eq!(action, Action::Drop(DropReason::Malformed), "case {i}");
    }
}
