//! Known-answer vectors for group-key wrapping, read from
//! `tests/vectors/wrap_k.txt`: with a fixed ephemeral key the wrapped bytes
//! are exact, so any change to the layout, the prologue or the Noise pattern
//! shows up here, and another implementation can check itself against them.
//!
//! Regenerate (only on purpose, e.g. a new layout version):
//! `VON_REGEN_WRAP_VECTORS=1 cargo test -p von-crypto --test wrap_vectors`

use std::collections::BTreeMap;

use von_crypto::wrap::{NoiseSecret, Recipient, Wrapper};
use von_crypto::{Cipher, Epoch, GroupKey, OnId};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/wrap_k.txt");

/// The inputs of each vector; `wrapped` and the public keys are derived.
const INPUTS: [(&str, u32, u32, Cipher, u8); 3] = [
    ("grid", 7, 1, Cipher::Aes256Gcm, 0x10),
    ("grid", 7, 0xffff_fffe, Cipher::ChaCha20Poly1305, 0x20),
    ("a", 0xdead_beef, 42, Cipher::Aes256Gcm, 0x30),
];

fn secret(seed: u8) -> NoiseSecret {
    NoiseSecret::from_bytes(std::array::from_fn(|i| seed.wrapping_add(i as u8)))
}

fn bytes32(hex_text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).unwrap();
    out
}

fn render() -> String {
    let mut out = String::from(
        "# von group-key wrapping, Noise_K_25519_ChaChaPoly_BLAKE2s, layout version 1.\n\
         # One record per blank-line-separated block; all byte strings hex.\n\
         # Regenerate: VON_REGEN_WRAP_VECTORS=1 cargo test -p von-crypto --test wrap_vectors\n",
    );
    for (von, on_id, epoch, cipher, seed) in INPUTS {
        let keymgr = secret(seed);
        let member = secret(seed + 1);
        let ephemeral = secret(seed + 2);
        let key = GroupKey::new(cipher, std::array::from_fn(|i| seed ^ (i as u8)));
        let wrapped = Wrapper::new(keymgr.clone(), von.parse().unwrap(), OnId(on_id))
            .danger_wrap_with_fixed_ephemeral(&member.public(), Epoch(epoch), &key, &ephemeral)
            .unwrap();
        out.push_str(&format!(
            "\nvon = {von}\non_id = {on_id}\nepoch = {epoch}\ncipher = {cipher}\n\
             key = {}\nkeymgr_secret = {}\nkeymgr_public = {}\nmember_secret = {}\n\
             member_public = {}\nephemeral_secret = {}\nwrapped = {}\n",
            hex::encode(key.secret_bytes()),
            hex::encode(keymgr.as_bytes()),
            keymgr.public(),
            hex::encode(member.as_bytes()),
            member.public(),
            hex::encode(ephemeral.as_bytes()),
            hex::encode(&wrapped),
        ));
    }
    out
}

fn records(text: &str) -> Vec<BTreeMap<&str, &str>> {
    text.split("\n\n")
        .map(|block| {
            block
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(|l| l.split_once(" = ").expect("field = value"))
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|r| !r.is_empty())
        .collect()
}

#[test]
fn wrap_matches_the_vectors_and_unwraps_to_their_key() {
    if std::env::var_os("VON_REGEN_WRAP_VECTORS").is_some() {
        std::fs::write(PATH, render()).unwrap();
    }
    let text = std::fs::read_to_string(PATH).unwrap();
    let records = records(&text);
    assert_eq!(records.len(), INPUTS.len());
    for r in &records {
        let von = r["von"].parse().unwrap();
        let on_id = OnId(r["on_id"].parse().unwrap());
        let epoch = Epoch(r["epoch"].parse().unwrap());
        let cipher: Cipher = r["cipher"].parse().unwrap();
        let key = GroupKey::new(cipher, bytes32(r["key"]));
        let keymgr = NoiseSecret::from_bytes(bytes32(r["keymgr_secret"]));
        let member = NoiseSecret::from_bytes(bytes32(r["member_secret"]));
        let ephemeral = NoiseSecret::from_bytes(bytes32(r["ephemeral_secret"]));
        assert_eq!(keymgr.public().to_string(), r["keymgr_public"]);
        assert_eq!(member.public().to_string(), r["member_public"]);
        let wrapped = hex::decode(r["wrapped"]).unwrap();

        let made = Wrapper::new(keymgr.clone(), Clone::clone(&von), on_id)
            .danger_wrap_with_fixed_ephemeral(&member.public(), epoch, &key, &ephemeral)
            .unwrap();
        assert_eq!(hex::encode(&made), r["wrapped"], "wrap of {r:?}");

        let out = Recipient::new(member, keymgr.public(), von, on_id)
            .unwrap(&wrapped, None)
            .unwrap();
        assert_eq!(out.epoch, epoch);
        assert_eq!(out.key.cipher(), cipher);
        assert_eq!(out.key.secret_bytes(), key.secret_bytes());
    }
    // The file is exactly what the inputs above produce.
    assert_eq!(text, render());
}
