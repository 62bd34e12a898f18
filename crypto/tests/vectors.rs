//! Known-answer vectors, checked in as data under `tests/vectors/`.
//!
//! Regenerate (only on purpose: a changed vector is a wire-format change):
//!
//! ```text
//! VON_REGEN_VECTORS=1 cargo test -p von-crypto --test vectors
//! ```
//!
//! The seal vectors are also recomputed with RustCrypto's `aes-gcm` and
//! `chacha20poly1305`, so they do not merely agree with the code that wrote them.

use std::fmt::Write as _;
use std::path::PathBuf;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use von_crypto::aead::{Cipher, FrameKey, GroupKey, nonce_bytes};
use von_crypto::frame::{Epoch, Flags, FrameType, HEADER_LEN, Header, MemberId, OVERHEAD, OnId};

type Block = Vec<(String, String)>;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

fn regenerating() -> bool {
    std::env::var_os("VON_REGEN_VECTORS").is_some_and(|v| v == "1")
}

const PREAMBLE: &str = "# Regenerate: VON_REGEN_VECTORS=1 cargo test -p von-crypto --test vectors\n\
# Blocks of `name = value` separated by blank lines; byte strings in hex, integers in decimal.\n";

/// Writes `blocks` to `name` when regenerating, then reads the file back.
fn load(name: &str, title: &str, blocks: &[Block]) -> Vec<Block> {
    if regenerating() {
        let mut text = format!("# von-crypto known-answer vectors: {title}\n{PREAMBLE}");
        for b in blocks {
            text.push('\n');
            for (k, v) in b {
                writeln!(text, "{k} = {v}").unwrap();
            }
        }
        std::fs::write(path(name), text).unwrap();
    }
    let text = std::fs::read_to_string(path(name)).unwrap();
    let mut out = vec![Vec::new()];
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once(" = ") {
            Some((k, v)) => out.last_mut().unwrap().push((k.to_owned(), v.to_owned())),
            None if line.trim().is_empty() => out.push(Vec::new()),
            None => panic!("{name}: line {line:?} is not `name = value`"),
        }
    }
    out.retain(|b| !b.is_empty());
    assert!(!out.is_empty(), "{name} holds no vectors");
    out
}

fn get<'a>(b: &'a Block, k: &str) -> &'a str {
    &b.iter()
        .find(|(n, _)| n == k)
        .unwrap_or_else(|| panic!("missing {k}"))
        .1
}

fn num<T: std::str::FromStr>(b: &Block, k: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    get(b, k).parse().unwrap()
}

fn header_from(b: &Block, cipher: Cipher) -> Header {
    Header {
        on_id: OnId(num(b, "on_id")),
        frame_type: match get(b, "type") {
            "data" => FrameType::Data,
            "keepalive" => FrameType::Keepalive,
            other => panic!("type {other}"),
        },
        flags: Flags::new(cipher),
        sender: MemberId(num(b, "sender")),
        epoch: Epoch(num(b, "epoch")),
        seq: num(b, "seq"),
    }
}

fn header_fields(h: &Header) -> Block {
    let t = match h.frame_type {
        FrameType::Data => "data",
        FrameType::Keepalive => "keepalive",
    };
    vec![
        ("on_id".into(), h.on_id.0.to_string()),
        ("type".into(), t.into()),
        ("sender".into(), h.sender.0.to_string()),
        ("epoch".into(), h.epoch.0.to_string()),
        ("seq".into(), h.seq.to_string()),
    ]
}

fn sample_headers() -> Vec<Header> {
    let h = |on, ft, sender, epoch, seq| Header {
        on_id: OnId(on),
        frame_type: ft,
        flags: Flags::new(Cipher::DEFAULT),
        sender: MemberId(sender),
        epoch: Epoch(epoch),
        seq,
    };
    vec![
        h(7, FrameType::Data, 1, 1, 0),
        h(
            0xdead_beef,
            FrameType::Keepalive,
            u32::MAX,
            u32::MAX,
            (1 << 40) | 5,
        ),
        h(
            1,
            FrameType::Data,
            0x0102_0304,
            2,
            // The top of the sequence space: the last incarnation's last
            // sealable counter.
            (u64::from(von_crypto::sequence::MAX_INCARNATION)
                << von_crypto::sequence::COUNTER_BITS)
                | (von_crypto::sequence::REJECT_AFTER_MESSAGES - 1),
        ),
    ]
}

fn seal(cipher: Cipher, key: &[u8; 32], h: &Header, plaintext: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; plaintext.len() + OVERHEAD];
    buf[HEADER_LEN..HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
    FrameKey::new(&GroupKey::new(cipher, *key))
        .seal_in_place(h, &mut buf, plaintext.len())
        .unwrap();
    buf
}

/// The same seal with RustCrypto: nonce sender ‖ seq, the header as AAD.
fn seal_independently(cipher: Cipher, key: &[u8; 32], header: &[u8], pt: &[u8]) -> Vec<u8> {
    let nonce = [&header[8..12], &header[16..24]].concat();
    let mut body = pt.to_vec();
    match cipher {
        Cipher::Aes256Gcm => aes_gcm::Aes256Gcm::new(key.into())
            .encrypt_in_place(nonce.as_slice().into(), header, &mut body)
            .unwrap(),
        Cipher::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new(key.into())
            .encrypt_in_place(nonce.as_slice().into(), header, &mut body)
            .unwrap(),
    }
    [header, &body].concat()
}

#[test]
fn frame_header_vectors() {
    let mut blocks: Vec<Block> = sample_headers()
        .iter()
        .map(|h| {
            let mut b = header_fields(h);
            b.push(("header".into(), hex::encode(h.to_bytes())));
            b
        })
        .collect();
    for (bytes, why) in [
        ("0000000710000000000000010000000100000000000000", "TooShort"),
        (
            "00000007200000000000000100000001000000000000000000000000000000000000000000000000",
            "UnsupportedVersion",
        ),
        (
            "00000007120000000000000100000001000000000000000000000000000000000000000000000000",
            "UnknownFrameType",
        ),
        (
            "00000007100200000000000100000001000000000000000000000000000000000000000000000000",
            "UnknownCipher",
        ),
        (
            "00000007100400000000000100000001000000000000000000000000000000000000000000000000",
            "ReservedFlags",
        ),
        (
            "00000007100000010000000100000001000000000000000000000000000000000000000000000000",
            "ReservedNotZero",
        ),
    ] {
        blocks.push(vec![
            ("bytes".into(), bytes.into()),
            ("error".into(), why.into()),
        ]);
    }
    for b in load("frame.txt", "frame headers and malformed frames", &blocks) {
        if b.iter().any(|(k, _)| k == "error") {
            let err = Header::parse_bytes(&hex::decode(get(&b, "bytes")).unwrap()).unwrap_err();
            assert!(format!("{err:?}").starts_with(get(&b, "error")), "{err:?}");
            continue;
        }
        let h = header_from(&b, Cipher::DEFAULT);
        assert_eq!(hex::encode(h.to_bytes()), get(&b, "header"));
        let mut bytes = hex::decode(get(&b, "header")).unwrap();
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(Header::parse_bytes(&bytes), Ok(h));
    }
}

#[test]
fn nonce_vectors() {
    let blocks: Vec<Block> = sample_headers()
        .iter()
        .map(|h| {
            vec![
                ("sender".into(), h.sender.0.to_string()),
                ("seq".into(), h.seq.to_string()),
                ("nonce".into(), hex::encode(nonce_bytes(h.sender, h.seq))),
            ]
        })
        .collect();
    for b in load("nonce.txt", "AEAD nonce from (sender, sequence)", &blocks) {
        let nonce = nonce_bytes(MemberId(num(&b, "sender")), num(&b, "seq"));
        assert_eq!(hex::encode(nonce), get(&b, "nonce"));
    }
}

#[test]
fn seal_vectors_for_both_ciphers() {
    let key: [u8; 32] = core::array::from_fn(|i| i as u8);
    let plaintexts: [&[u8]; 3] = [b"", b"von", &[0x45; 80]];
    let mut blocks = Vec::new();
    for cipher in Cipher::ALL {
        for (h, pt) in sample_headers().iter().zip(plaintexts) {
            let mut b = vec![
                ("cipher".into(), cipher.to_string()),
                ("key".into(), hex::encode(key)),
            ];
            b.extend(header_fields(h));
            b.push(("plaintext".into(), hex::encode(pt)));
            b.push(("frame".into(), hex::encode(seal(cipher, &key, h, pt))));
            blocks.push(b);
        }
    }
    for b in load("seal.txt", "seal output for both ciphers", &blocks) {
        let cipher: Cipher = get(&b, "cipher").parse().unwrap();
        let key: [u8; 32] = hex::decode(get(&b, "key")).unwrap().try_into().unwrap();
        let pt = hex::decode(get(&b, "plaintext")).unwrap();
        let h = header_from(&b, cipher);
        let frame = seal(cipher, &key, &h, &pt);
        assert_eq!(hex::encode(&frame), get(&b, "frame"), "{cipher} {h:?}");
        let independent = seal_independently(cipher, &key, &frame[..HEADER_LEN], &pt);
        assert_eq!(
            independent, frame,
            "RustCrypto disagrees for {cipher} {h:?}"
        );
        let mut opened = frame.clone();
        let range = FrameKey::new(&GroupKey::new(cipher, key))
            .open_in_place(&mut opened)
            .unwrap();
        assert_eq!(&opened[range], &pt[..]);
    }
}
