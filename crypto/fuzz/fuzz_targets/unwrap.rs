//! Any bytes through `Recipient::unwrap` must return an error or a key, never
//! panic. The input is also XORed onto a genuine wrapped key: any change at
//! all must be refused (the clear header is the Noise prologue), and no change
//! must open to the original key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use von_crypto::aead::{Cipher, GroupKey};
use von_crypto::frame::{Epoch, OnId};
use von_crypto::wrap::{NoiseSecret, Recipient, Wrapper};

struct Fixture {
    recipient: Recipient,
    genuine: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keymgr = NoiseSecret::from_bytes([0x21; 32]);
        let member = NoiseSecret::from_bytes([0x42; 32]);
        let von = "grid".parse().expect("valid VON name");
        let genuine = Wrapper::new(keymgr.clone(), Clone::clone(&von), OnId(7))
            .wrap(
                &member.public(),
                Epoch(5),
                &GroupKey::new(Cipher::ChaCha20Poly1305, [0x77; 32]),
            )
            .expect("wrapping with valid keys works");
        Fixture {
            recipient: Recipient::new(member, keymgr.public(), von, OnId(7)),
            genuine,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let _ = f.recipient.unwrap(data, None);
    let _ = f.recipient.unwrap(data, Some(Epoch(4)));

    let mut mutated = f.genuine.clone();
    for (b, d) in mutated.iter_mut().zip(data) {
        *b ^= d;
    }
    match f.recipient.unwrap(&mutated, None) {
        Ok(out) => {
            assert_eq!(mutated, f.genuine, "an altered wrapped key opened");
            assert_eq!(out.epoch, Epoch(5));
            assert_eq!(out.key.secret_bytes(), &[0x77; 32]);
        }
        Err(e) => assert_ne!(
            mutated, f.genuine,
            "the genuine wrapped key was refused: {e}"
        ),
    }
});
