//! Property tests: seal/open round trips, every single flipped bit fails,
//! `parse(emit(x)) == x`, no byte string panics, and the replay window against
//! a naive model (a set and a maximum) over random sequences with large jumps.

use std::collections::HashSet;

use proptest::prelude::*;
use von_crypto::aead::{Cipher, FrameKey, GroupKey, KEY_LEN};
use von_crypto::frame::{
    Epoch, Flags, Frame, FrameType, HEADER_LEN, Header, MemberId, OVERHEAD, OnId,
};
use von_crypto::sequence::{COUNTER_BITS, REJECT_AFTER_MESSAGES};
use von_crypto::window::{Marked, Rejected, ReplayWindow, WINDOW_SIZE};

fn cipher() -> impl Strategy<Value = Cipher> {
    prop_oneof![Just(Cipher::Aes256Gcm), Just(Cipher::ChaCha20Poly1305)]
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u32>(),
        prop_oneof![Just(FrameType::Data), Just(FrameType::Keepalive)],
        cipher(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(on, ft, c, sender, epoch, seq)| Header {
            on_id: OnId(on),
            frame_type: ft,
            flags: Flags::new(c),
            sender: MemberId(sender),
            epoch: Epoch(epoch),
            seq,
        })
}

/// Headers a sender may seal: the sequence is below the hard limit and the
/// flags name the key's cipher.
fn sealable(c: Cipher) -> impl Strategy<Value = Header> {
    let incarnations = 0u64..1 << von_crypto::sequence::INCARNATION_BITS;
    (header(), 0..REJECT_AFTER_MESSAGES, incarnations).prop_map(move |(h, counter, inc)| Header {
        flags: Flags::new(c),
        seq: (inc << von_crypto::sequence::COUNTER_BITS) | counter,
        ..h
    })
}

fn seal(key: &FrameKey, h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; payload.len() + OVERHEAD];
    buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    let n = key.seal_in_place(h, &mut buf, payload.len()).unwrap();
    buf.truncate(n);
    buf
}

fn cipher_and_header() -> impl Strategy<Value = (Cipher, Header)> {
    cipher().prop_flat_map(|c| (Just(c), sealable(c)))
}

proptest! {
    #[test]
    fn parse_emit_round_trips(h in header(), tail in proptest::collection::vec(any::<u8>(), 16..64)) {
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(Header::parse_bytes(&bytes), Ok(h));
        let mut out = [0u8; HEADER_LEN];
        h.emit(&mut out).unwrap();
        prop_assert_eq!(out, h.to_bytes());
    }

    #[test]
    fn any_bytes_give_an_error_or_a_header_that_re_emits_them(
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        if let Ok(h) = Header::parse_bytes(&bytes) {
            prop_assert_eq!(&h.to_bytes()[..], &bytes[..HEADER_LEN]);
            let frame = Frame::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(frame.seq(), h.seq);
        }
        let mut buf = bytes.clone();
        prop_assert!(FrameKey::new(&GroupKey::new(Cipher::Aes256Gcm, [0; KEY_LEN]))
            .open_in_place(&mut buf)
            .is_err());
    }

    #[test]
    fn seal_then_open_round_trips(
        (c, h) in cipher_and_header(),
        secret in any::<[u8; KEY_LEN]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..1500),
    ) {
        let key = FrameKey::new(&GroupKey::new(c, secret));
        let mut frame = seal(&key, &h, &payload);
        prop_assert_eq!(Header::parse_bytes(&frame), Ok(h));
        let range = key.open_in_place(&mut frame).unwrap();
        prop_assert_eq!(&frame[range], &payload[..]);
    }

    #[test]
    fn any_single_flipped_bit_fails(
        (c, h) in cipher_and_header(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        bit in any::<prop::sample::Index>(),
    ) {
        let key = FrameKey::new(&GroupKey::new(c, [7; KEY_LEN]));
        let mut frame = seal(&key, &h, &payload);
        let i = bit.index(frame.len() * 8);
        frame[i / 8] ^= 1 << (i % 8);
        prop_assert!(key.open_in_place(&mut frame).is_err(), "bit {} went unnoticed", i);
    }

    #[test]
    fn window_matches_a_naive_model(ops in proptest::collection::vec((0u8..7, any::<u64>(), any::<bool>()), 1..400)) {
        let mut window = ReplayWindow::new();
        let mut seen = HashSet::new();
        let mut max = 0u64;
        // Loss, by its definition: an unmarked position at or above the
        // floor (first sequence, or first of a newer incarnation) counts once
        // it is behind the window, or at once when the sender restarts.
        let mut floor: Option<u64> = None;
        let marked_in = |seen: &HashSet<u64>, lo: u64, hi: u64| {
            seen.iter().filter(|&&s| (lo..=hi).contains(&s)).count() as u64
        };
        for (kind, r, verifies) in ops {
            let seq = match kind {
                0 => max.saturating_sub(r % (WINDOW_SIZE + 64)),          // around the window's tail
                1 => max.saturating_add(r % 128),                          // slightly ahead
                2 => max.saturating_add(r % (4 * WINDOW_SIZE)),            // jumps of a few laps
                3 => r,                                                    // anywhere at all
                4 => seen.iter().next().copied().unwrap_or(r),             // a replay
                5 => max.saturating_sub(WINDOW_SIZE).saturating_add(r % 2), // exactly the edge
                _ => (((max >> COUNTER_BITS) + 1 + r % 2).min((1 << 30) - 1) << COUNTER_BITS) + r % 64, // a restart
            };
            let expected = if seq <= max && max - seq > WINDOW_SIZE {
                Err(Rejected::TooOld)
            } else if seen.contains(&seq) {
                Err(Rejected::Duplicate)
            } else {
                Ok(())
            };
            prop_assert_eq!(window.check(seq), expected, "check {} (max {})", seq, max);
            // A frame whose tag fails is checked but never marked.
            if verifies && expected.is_ok() {
                let mut want = Marked { late: seq < max, ..Marked::default() };
                match floor {
                    None => floor = Some(seq),
                    Some(f) if seq > max && (seq >> COUNTER_BITS) > (max >> COUNTER_BITS) => {
                        let lo = f.max(max.saturating_sub(WINDOW_SIZE));
                        if lo <= max {
                            want.lost = (max - lo + 1) - marked_in(&seen, lo, max);
                        }
                        want.restarted = true;
                        floor = Some(seq);
                    }
                    Some(f) if seq > max && seq > WINDOW_SIZE => {
                        let lo = f.max(max.saturating_sub(WINDOW_SIZE));
                        let hi = seq - WINDOW_SIZE - 1;
                        if hi >= lo {
                            want.lost = (hi - lo + 1) - marked_in(&seen, lo, hi);
                        }
                    }
                    Some(_) => {}
                }
                prop_assert_eq!(window.mark(seq), Ok(want), "mark {} (max {})", seq, max);
                seen.insert(seq);
                max = max.max(seq);
                prop_assert_eq!(window.mark(seq), Err(Rejected::Duplicate));
                let lo = floor.unwrap_or(0).max(max.saturating_sub(WINDOW_SIZE));
                prop_assert_eq!(window.unfilled(), (max - lo + 1) - marked_in(&seen, lo, max));
            }
            prop_assert_eq!(window.latest(), max);
        }
    }
}
