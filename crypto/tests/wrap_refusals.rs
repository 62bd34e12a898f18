//! Group-key wrapping: the round trip, and one test per refusal, each checking
//! that the error carries its values.

use von_crypto::wrap::{
    MIN_WRAPPED_LEN, NOISE_PARAMS, NoisePublic, NoiseSecret, Recipient, WRAP_VERSION, WrapError,
    Wrapper,
};
use von_crypto::{Cipher, Epoch, GroupKey, OnId};

struct Setup {
    keymgr: NoiseSecret,
    member: NoiseSecret,
    wrapper: Wrapper,
    recipient: Recipient,
}

fn setup() -> Setup {
    let keymgr = NoiseSecret::generate();
    let member = NoiseSecret::generate();
    Setup {
        wrapper: Wrapper::new(keymgr.clone(), "grid".parse().unwrap(), OnId(7)),
        recipient: Recipient::new(
            member.clone(),
            keymgr.public(),
            "grid".parse().unwrap(),
            OnId(7),
        ),
        keymgr,
        member,
    }
}

fn key(cipher: Cipher) -> GroupKey {
    GroupKey::new(cipher, [0x5a; 32])
}

/// Offsets in the clear header (see the table in `wrap/mod.rs`).
const ON_ID: usize = 1;
const EPOCH: usize = 5;
const RECIPIENT: usize = 9;
const NAME: usize = 42;

#[test]
fn round_trip_keeps_cipher_and_key() {
    let s = setup();
    for cipher in Cipher::ALL {
        let msg = s
            .wrapper
            .wrap(&s.member.public(), Epoch(3), &key(cipher))
            .unwrap();
        assert_eq!(msg.len(), MIN_WRAPPED_LEN + "grid".len() - 1);
        let out = s.recipient.unwrap(&msg, Some(Epoch(2))).unwrap();
        assert_eq!(out.epoch, Epoch(3));
        assert_eq!(out.key.cipher(), cipher);
        assert_eq!(out.key.secret_bytes(), &[0x5a; 32]);
    }
    // Two wraps of the same key differ: a fresh ephemeral each time.
    let a = s
        .wrapper
        .wrap(&s.member.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    let b = s
        .wrapper
        .wrap(&s.member.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    assert_ne!(a, b);
}

#[test]
fn every_altered_byte_is_refused() {
    let s = setup();
    let msg = s
        .wrapper
        .wrap(&s.member.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    for i in 0..msg.len() {
        let mut bad = msg.clone();
        bad[i] ^= 0x01;
        let err = s.recipient.unwrap(&bad, None).unwrap_err();
        let expected = match i {
            0 => matches!(
                err,
                WrapError::Version {
                    found: 0,
                    supported: WRAP_VERSION
                }
            ),
            1..=4 | 41..=45 => matches!(err, WrapError::WrongVon { .. } | WrapError::Length { .. }),
            9..=40 => matches!(err, WrapError::WrongRecipient { .. }),
            _ => {
                matches!(err, WrapError::Unauthenticated { keymgr, .. } if keymgr == s.keymgr.public())
            }
        };
        assert!(expected, "byte {i}: {err:?}");
    }
}

#[test]
fn altered_epoch_does_not_authenticate() {
    let s = setup();
    let mut msg = s
        .wrapper
        .wrap(&s.member.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    msg[EPOCH..EPOCH + 4].copy_from_slice(&9u32.to_be_bytes());
    assert_eq!(
        s.recipient.unwrap(&msg, Some(Epoch(3))).unwrap_err(),
        WrapError::Unauthenticated {
            epoch: Epoch(9),
            keymgr: s.keymgr.public()
        }
    );
}

#[test]
fn another_recipient_is_refused_with_both_keys() {
    let s = setup();
    let other = NoiseSecret::generate();
    let msg = s
        .wrapper
        .wrap(&other.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    assert_eq!(
        s.recipient.unwrap(&msg, None).unwrap_err(),
        WrapError::WrongRecipient {
            expected: s.member.public(),
            found: other.public()
        }
    );
    // Relabelled for this member, it still does not open: the key agreement is with the other.
    let mut relabelled = msg;
    relabelled[RECIPIENT..RECIPIENT + 32].copy_from_slice(s.member.public().as_bytes());
    assert!(matches!(
        s.recipient.unwrap(&relabelled, None),
        Err(WrapError::Unauthenticated {
            epoch: Epoch(3),
            ..
        })
    ));
}

#[test]
fn another_von_is_refused_with_both_names() {
    let s = setup();
    let water = Wrapper::new(s.keymgr.clone(), "water".parse().unwrap(), OnId(8));
    let msg = water
        .wrap(&s.member.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    assert_eq!(
        s.recipient.unwrap(&msg, None).unwrap_err(),
        WrapError::WrongVon {
            expected_von: "grid".to_owned(),
            expected_on_id: OnId(7),
            found_von: "water".to_owned(),
            found_on_id: OnId(8),
        }
    );
    // Same name, other ON id.
    let twin = Wrapper::new(s.keymgr.clone(), "grid".parse().unwrap(), OnId(9));
    let msg = twin
        .wrap(&s.member.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    assert!(matches!(
        s.recipient.unwrap(&msg, None),
        Err(WrapError::WrongVon {
            found_on_id: OnId(9),
            ..
        })
    ));
    // ON id rewritten back to ours: the prologue no longer matches.
    let mut forged = msg;
    forged[ON_ID..ON_ID + 4].copy_from_slice(&7u32.to_be_bytes());
    assert!(matches!(
        s.recipient.unwrap(&forged, None),
        Err(WrapError::Unauthenticated { .. })
    ));
}

#[test]
fn epoch_at_or_below_installed_is_refused() {
    let s = setup();
    let msg = s
        .wrapper
        .wrap(&s.member.public(), Epoch(5), &key(Cipher::Aes256Gcm))
        .unwrap();
    for installed in [5, 6, u32::MAX] {
        assert_eq!(
            s.recipient
                .unwrap(&msg, Some(Epoch(installed)))
                .unwrap_err(),
            WrapError::StaleEpoch {
                epoch: Epoch(5),
                installed: Epoch(installed)
            }
        );
    }
    assert!(s.recipient.unwrap(&msg, Some(Epoch(4))).is_ok());
    assert!(s.recipient.unwrap(&msg, None).is_ok());
}

#[test]
fn impostor_key_manager_is_refused() {
    let s = setup();
    let impostor = Wrapper::new(NoiseSecret::generate(), "grid".parse().unwrap(), OnId(7));
    let msg = impostor
        .wrap(&s.member.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    assert_eq!(
        s.recipient.unwrap(&msg, None).unwrap_err(),
        WrapError::Unauthenticated {
            epoch: Epoch(3),
            keymgr: s.keymgr.public()
        }
    );
}

#[test]
fn wrong_lengths_are_refused_with_both_lengths() {
    let s = setup();
    let msg = s
        .wrapper
        .wrap(&s.member.public(), Epoch(3), &key(Cipher::Aes256Gcm))
        .unwrap();
    assert_eq!(
        s.recipient.unwrap(&msg[..10], None).unwrap_err(),
        WrapError::Length {
            len: 10,
            expected: MIN_WRAPPED_LEN
        }
    );
    let mut long = msg.clone();
    long.push(0);
    assert_eq!(
        s.recipient.unwrap(&long, None).unwrap_err(),
        WrapError::Length {
            len: msg.len() + 1,
            expected: msg.len()
        }
    );
}

/// A message built here with snow directly, following the documented layout,
/// whose payload names cipher code 7: the library must refuse it by name. It
/// also checks the layout table independently of the library's writer.
#[test]
fn unknown_cipher_code_is_refused() {
    let s = setup();
    let mut header = vec![WRAP_VERSION];
    header.extend_from_slice(&7u32.to_be_bytes());
    header.extend_from_slice(&3u32.to_be_bytes());
    header.extend_from_slice(s.member.public().as_bytes());
    header.push(4);
    header.extend_from_slice(b"grid");
    assert_eq!(header.len(), NAME + 4);
    let mut hs = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
        .local_private_key(s.keymgr.as_bytes())
        .unwrap()
        .remote_public_key(s.member.public().as_bytes())
        .unwrap()
        .prologue(&header)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut payload = [0x11u8; 33];
    let mut out = [0u8; 200];
    for (code, expected) in [(7u8, Some(WrapError::UnknownCipher { code: 7 })), (1, None)] {
        payload[0] = code;
        let n = hs.write_message(&payload, &mut out).unwrap();
        let mut msg = header.clone();
        msg.extend_from_slice(&out[..n]);
        let got = s.recipient.unwrap(&msg, None);
        match expected {
            Some(err) => assert_eq!(got.unwrap_err(), err),
            None => assert_eq!(got.unwrap().key.cipher(), Cipher::ChaCha20Poly1305),
        }
        hs = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .local_private_key(s.keymgr.as_bytes())
            .unwrap()
            .remote_public_key(s.member.public().as_bytes())
            .unwrap()
            .prologue(&header)
            .unwrap()
            .build_initiator()
            .unwrap();
    }
}

#[test]
fn recipient_reports_its_public_key() {
    let s = setup();
    assert_eq!(s.recipient.public(), s.member.public());
    assert_eq!(
        NoisePublic::from_hex(&s.member.public().to_string()).unwrap(),
        s.member.public()
    );
}
