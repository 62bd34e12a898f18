//! Any bytes through the receive path: `Frame::new_checked`, `Header::parse`
//! and `FrameKey::open_in_place` for both ciphers must return an error or a
//! value, never panic. The same bytes, taken as a header and a payload, are
//! then sealed and must open back to themselves.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use von_crypto::aead::{Cipher, FrameKey, GroupKey};
use von_crypto::frame::{Frame, HEADER_LEN, Header, OVERHEAD};

fn keys() -> &'static [FrameKey; 2] {
    static KEYS: OnceLock<[FrameKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| Cipher::ALL.map(|c| FrameKey::new(&GroupKey::new(c, [0x11; 32]))))
}

fuzz_target!(|data: &[u8]| {
    let parsed = Header::parse_bytes(data);
    if let Ok(frame) = Frame::new_checked(data) {
        // Accessors of a checked frame never panic, whatever the field values.
        let _ = (
            frame.on_id(),
            frame.sender(),
            frame.epoch(),
            frame.seq(),
            frame.payload(),
        );
    }
    if let Ok(h) = &parsed {
        assert_eq!(
            &h.to_bytes()[..],
            &data[..HEADER_LEN],
            "emit(parse(x)) != x"
        );
    }
    for key in keys() {
        let mut buf = data.to_vec();
        let opened = key.open_in_place(&mut buf);
        // Random bytes carry no valid tag; anything unparsable must never open.
        assert!(parsed.is_ok() || opened.is_err());
        if let Ok(range) = opened {
            assert!(range.start == HEADER_LEN && range.end + 16 == buf.len());
        }
    }
    // Seal the payload under the parsed header and open it back.
    if let Ok(h) = parsed {
        let payload = &data[HEADER_LEN..data.len() - 16];
        for key in keys() {
            let mut buf = vec![0u8; payload.len() + OVERHEAD];
            buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
            match key.seal_in_place(&h, &mut buf, payload.len()) {
                Ok(n) => {
                    let range = key
                        .open_in_place(&mut buf[..n])
                        .expect("a sealed frame opens");
                    assert_eq!(&buf[range], payload);
                }
                // Only a sequence past the hard limit may refuse to seal.
                Err(e) => assert!(matches!(e, von_crypto::AeadError::Sequence(_)), "{e}"),
            }
        }
    }
});
