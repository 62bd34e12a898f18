//! The frame layout, byte for byte against the table in the design brief,
//! and every way a header can be malformed.

use von_crypto::Cipher;
use von_crypto::frame::*;

fn sample() -> Header {
    Header {
        on_id: OnId(0x0000_0007),
        frame_type: FrameType::Data,
        flags: Flags::new(Cipher::Aes256Gcm),
        sender: MemberId(0x0102_0304),
        epoch: Epoch(9),
        seq: 0x0000_0100_0000_002a,
    }
}

// Bytes written out by hand from the table in the design brief.
const SAMPLE_BYTES: [u8; HEADER_LEN] = [
    0x00, 0x00, 0x00, 0x07, // ON id 7
    0x10, // version 1, type data
    0x00, // flags: aes-256-gcm
    0x00, 0x00, // reserved
    0x01, 0x02, 0x03, 0x04, // sender
    0x00, 0x00, 0x00, 0x09, // epoch 9
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2a, // seq
];

#[test]
fn emit_matches_the_brief_byte_for_byte() {
    assert_eq!(sample().to_bytes(), SAMPLE_BYTES);
}

#[test]
fn parse_reads_the_brief_byte_for_byte() {
    let mut bytes = SAMPLE_BYTES.to_vec();
    bytes.extend_from_slice(&[0xaa; TAG_LEN]);
    assert_eq!(Header::parse_bytes(&bytes), Ok(sample()));
}

#[test]
fn every_length_below_the_minimum_is_too_short() {
    let bytes = [0u8; MIN_FRAME_LEN];
    for len in 0..MIN_FRAME_LEN {
        assert_eq!(
            Frame::new_checked(&bytes[..len]).err(),
            Some(FrameError::TooShort { len })
        );
    }
}

#[test]
fn longer_than_a_udp_payload_is_refused() {
    let bytes = vec![0u8; MAX_FRAME_LEN + 1];
    assert_eq!(
        Frame::new_checked(&bytes[..]).err(),
        Some(FrameError::TooLong {
            len: MAX_FRAME_LEN + 1
        })
    );
    assert!(Frame::new_checked(&bytes[..MAX_FRAME_LEN]).is_ok());
}

#[test]
fn bad_fields_give_their_own_errors() {
    let frame = |patch: &dyn Fn(&mut [u8])| {
        let mut b = SAMPLE_BYTES.to_vec();
        b.extend_from_slice(&[0; TAG_LEN]);
        patch(&mut b);
        Header::parse_bytes(&b)
    };
    assert_eq!(
        frame(&|b| b[4] = 0x20),
        Err(FrameError::UnsupportedVersion { version: 2 })
    );
    assert_eq!(
        frame(&|b| b[4] = 0x1f),
        Err(FrameError::UnknownFrameType { value: 0xf })
    );
    assert_eq!(
        frame(&|b| b[5] = 0x80),
        Err(FrameError::ReservedFlags { flags: 0x80 })
    );
    assert_eq!(
        frame(&|b| b[5] = 0x03),
        Err(FrameError::UnknownCipher { value: 3 })
    );
    assert_eq!(
        frame(&|b| b[7] = 1),
        Err(FrameError::ReservedNotZero { value: 1 })
    );
}

#[test]
fn emit_into_a_short_buffer_is_an_error() {
    let mut buf = [0u8; HEADER_LEN - 1];
    assert_eq!(
        sample().emit(&mut buf),
        Err(FrameError::BufferTooSmall {
            len: HEADER_LEN - 1
        })
    );
}

#[test]
fn overhead_is_forty_bytes() {
    assert_eq!((HEADER_LEN, TAG_LEN, OVERHEAD), (24, 16, 40));
}
