//! Seal and open in the caller's buffer: layout, every refusal, and the
//! cipher agreement between both ends.

use von_crypto::aead::{AeadError, Cipher, FrameKey, GroupKey, KEY_LEN, nonce_bytes};
use von_crypto::frame::{
    Epoch, Flags, FrameError, FrameType, HEADER_LEN, Header, MemberId, OVERHEAD, OnId, TAG_LEN,
};
use von_crypto::sequence::{REJECT_AFTER_MESSAGES, SequenceError};
use zeroize::Zeroize;

fn key(cipher: Cipher, fill: u8) -> FrameKey {
    FrameKey::new(&GroupKey::new(cipher, [fill; KEY_LEN]))
}

fn header(seq: u64) -> Header {
    Header {
        on_id: OnId(7),
        frame_type: FrameType::Data,
        flags: Flags::new(Cipher::DEFAULT),
        sender: MemberId(3),
        epoch: Epoch(1),
        seq,
    }
}

/// A sealed frame of `payload`, exactly as long as the frame.
fn sealed(key: &FrameKey, h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; payload.len() + OVERHEAD];
    buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    let n = key.seal_in_place(h, &mut buf, payload.len()).unwrap();
    assert_eq!(n, buf.len());
    buf
}

#[test]
fn round_trip_for_both_ciphers() {
    for cipher in Cipher::ALL {
        let k = key(cipher, 0x42);
        let mut frame = sealed(&k, &header(9), b"an inner IPv4 packet");
        assert_ne!(&frame[HEADER_LEN..HEADER_LEN + 20], b"an inner IPv4 packet");
        let range = k.open_in_place(&mut frame).unwrap();
        assert_eq!(&frame[range], b"an inner IPv4 packet");
    }
}

#[test]
fn keepalive_with_an_empty_payload_is_authenticated() {
    let k = key(Cipher::ChaCha20Poly1305, 1);
    let h = Header {
        frame_type: FrameType::Keepalive,
        ..header(0)
    };
    let mut frame = sealed(&k, &h, b"");
    assert_eq!(frame.len(), OVERHEAD);
    assert_eq!(
        k.open_in_place(&mut frame.clone()),
        Ok(HEADER_LEN..HEADER_LEN)
    );
    frame[HEADER_LEN] ^= 1;
    assert!(matches!(
        k.open_in_place(&mut frame),
        Err(AeadError::Authentication { sender: 3, seq: 0 })
    ));
}

#[test]
fn seal_writes_into_a_larger_buffer_and_reports_the_frame_length() {
    let k = key(Cipher::Aes256Gcm, 2);
    let mut buf = [0u8; 2048];
    buf[HEADER_LEN..HEADER_LEN + 5].copy_from_slice(b"hello");
    let n = k.seal_in_place(&header(1), &mut buf, 5).unwrap();
    assert_eq!(n, 5 + OVERHEAD);
    assert_eq!(
        k.open_in_place(&mut buf[..n]),
        Ok(HEADER_LEN..HEADER_LEN + 5)
    );
    assert_eq!(&buf[HEADER_LEN..HEADER_LEN + 5], b"hello");
}

#[test]
fn a_frame_under_another_cipher_is_named_as_such() {
    let chacha = key(Cipher::ChaCha20Poly1305, 5);
    let aes = key(Cipher::Aes256Gcm, 5);
    let mut frame = sealed(&chacha, &header(1), b"x");
    assert_eq!(
        aes.open_in_place(&mut frame),
        Err(AeadError::CipherMismatch {
            frame: Cipher::ChaCha20Poly1305,
            key: Cipher::Aes256Gcm,
        })
    );
}

#[test]
fn seal_names_the_key_cipher_whatever_the_header_says() {
    let chacha = key(Cipher::ChaCha20Poly1305, 5);
    let h = Header {
        flags: Flags::new(Cipher::Aes256Gcm),
        ..header(1)
    };
    let frame = sealed(&chacha, &h, b"x");
    let parsed = Header::parse_bytes(&frame).unwrap();
    assert_eq!(parsed.flags.cipher(), Cipher::ChaCha20Poly1305);
}

#[test]
fn another_key_of_the_same_cipher_fails_authentication() {
    let mut frame = sealed(&key(Cipher::Aes256Gcm, 1), &header(77), b"secret");
    assert_eq!(
        key(Cipher::Aes256Gcm, 2).open_in_place(&mut frame),
        Err(AeadError::Authentication { sender: 3, seq: 77 })
    );
}

#[test]
fn nonce_is_sender_then_sequence_big_endian() {
    assert_eq!(
        nonce_bytes(MemberId(0x0102_0304), 0x0506_0708_090a_0b0c),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
}

#[test]
fn members_sharing_a_key_seal_the_same_packet_differently() {
    let k = key(Cipher::Aes256Gcm, 9);
    let a = sealed(&k, &header(1), b"same");
    let b = sealed(
        &k,
        &Header {
            sender: MemberId(4),
            ..header(1)
        },
        b"same",
    );
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
}

#[test]
fn short_buffers_and_long_packets_are_typed_errors() {
    let k = key(Cipher::Aes256Gcm, 0);
    let mut buf = [0u8; 100];
    assert_eq!(
        k.seal_in_place(&header(0), &mut buf, 61),
        Err(AeadError::BufferTooSmall {
            len: 100,
            needed: 101
        })
    );
    assert!(matches!(
        k.seal_in_place(&header(0), &mut buf, usize::MAX),
        Err(AeadError::PlaintextTooLong { .. })
    ));
    let mut short = [0u8; OVERHEAD - 1];
    assert_eq!(
        k.open_in_place(&mut short),
        Err(AeadError::Frame(FrameError::TooShort { len: OVERHEAD - 1 }))
    );
}

#[test]
fn sequences_past_the_hard_limit_are_refused_on_both_sides() {
    let k = key(Cipher::Aes256Gcm, 0);
    let mut buf = [0u8; OVERHEAD];
    assert_eq!(
        k.seal_in_place(&header(REJECT_AFTER_MESSAGES), &mut buf, 0),
        Err(AeadError::Sequence(SequenceError::Exhausted {
            counter: REJECT_AFTER_MESSAGES
        }))
    );
    // A frame whose header claims such a sequence is refused before the AEAD.
    let mut frame = sealed(&k, &header(1), b"");
    frame[16..24].copy_from_slice(&REJECT_AFTER_MESSAGES.to_be_bytes());
    assert_eq!(
        k.open_in_place(&mut frame),
        Err(AeadError::Sequence(SequenceError::Exhausted {
            counter: REJECT_AFTER_MESSAGES
        }))
    );
}

#[test]
fn cipher_names_round_trip_and_unknown_names_are_errors() {
    for c in Cipher::ALL {
        assert_eq!(c.to_string().parse::<Cipher>(), Ok(c));
    }
    assert_eq!("aes-256-gcm".parse(), Ok(Cipher::Aes256Gcm));
    assert_eq!("chacha20-poly1305".parse(), Ok(Cipher::ChaCha20Poly1305));
    let err = "aes-128-gcm".parse::<Cipher>().unwrap_err();
    assert!(err.to_string().contains("aes-128-gcm"), "{err}");
}

#[test]
fn group_keys_hide_and_wipe_their_secret() {
    let mut k = GroupKey::new(Cipher::Aes256Gcm, [0xab; KEY_LEN]);
    assert!(!format!("{k:?}").contains("ab"), "{k:?}");
    k.zeroize();
    assert_eq!(k.secret_bytes(), &[0; KEY_LEN]);
    assert_eq!(
        GroupKey::from_slice(Cipher::Aes256Gcm, &[0; 31]).err(),
        Some(AeadError::KeyLength { len: 31 })
    );
}

#[test]
fn tag_sits_in_the_last_sixteen_bytes() {
    let k = key(Cipher::Aes256Gcm, 3);
    let mut frame = sealed(&k, &header(2), b"payload");
    let last = frame.len() - TAG_LEN;
    frame[last] ^= 0x80;
    assert!(matches!(
        k.open_in_place(&mut frame),
        Err(AeadError::Authentication { .. })
    ));
}
