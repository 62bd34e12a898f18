//! Group-key wrapping: the key manager seals one epoch's group key for one
//! member with the one-way Noise pattern K, so the key never rests on
//! transport security alone.
//!
//! K (`-> s`, `<- s`, `-> e, es, ss`) makes both static keys known in
//! advance: the member knows the key manager's X25519 key from the key
//! manager's certificate, so a message that opens was made by the key manager
//! (the `ss` term) and is fresh on the sender side (the `e` term). N would let
//! anyone wrap; X would send the key manager's key along for no gain.
//!
//! Message layout (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0 | version ([`WRAP_VERSION`]) |
//! | 1..5 | ON id |
//! | 5..9 | epoch |
//! | 9..41 | recipient's X25519 public key |
//! | 41 | length n of the VON name |
//! | 42..42+n | VON name |
//! | 42+n.. | Noise K message: ephemeral key (32), sealed payload (33), tag (16) |
//!
//! The clear header lets a member refuse a message that is not for it, not
//! for its VON, or for an old epoch before any Noise work, with an error that
//! says which. It is also the Noise prologue, so changing any byte of it makes
//! the message fail to authenticate. The payload is the cipher
//! ([`Cipher::flag_bits`]) and the 32 key bytes, so both ends agree on the
//! cipher with the key.

mod keys;

pub use keys::{KEY_LEN, NoisePublic, NoiseSecret};

use snow::Builder;
use zeroize::Zeroizing;

use crate::aead::{Cipher, GroupKey};
use crate::cert::VonName;
use crate::frame::{Epoch, OnId};

/// Version of the wrapped-key layout.
pub const WRAP_VERSION: u8 = 1;
/// The Noise protocol name; also bound into the handshake hash.
pub const NOISE_PARAMS: &str = "Noise_K_25519_ChaChaPoly_BLAKE2s";
/// Bytes before the VON name.
const FIXED_HEADER: usize = 42;
/// Payload: one cipher byte and the key.
const PAYLOAD_LEN: usize = 1 + crate::aead::KEY_LEN;
/// Noise K message length: ephemeral key, payload, tag.
const NOISE_LEN: usize = KEY_LEN + PAYLOAD_LEN + 16;
/// Shortest possible wrapped key (one-byte VON name).
pub const MIN_WRAPPED_LEN: usize = FIXED_HEADER + 1 + NOISE_LEN;

/// Why a group key could not be wrapped or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// Key text is not 64 hex digits.
    #[error("bad {what}: expected 64 hex digits, found {len} characters")]
    BadKeyText {
        /// Which key.
        what: &'static str,
        /// Characters found after trimming.
        len: usize,
    },
    /// The message has the wrong length for its VON name.
    #[error("wrapped key is {len} bytes, expected {expected}")]
    Length {
        /// Bytes received.
        len: usize,
        /// Bytes its header implies (or the minimum when the header is cut).
        expected: usize,
    },
    /// The message uses a layout this code does not know.
    #[error(
        "wrapped key version {found} is not supported (this von reads {supported}); upgrade von"
    )]
    Version {
        /// Version in the message.
        found: u8,
        /// Version this code reads.
        supported: u8,
    },
    /// The message is for another VON.
    #[error("wrapped key is for VON {found_von:?} (ON id {}), this member is in {expected_von:?} (ON id {})", .found_on_id.0, .expected_on_id.0)]
    WrongVon {
        /// This member's VON.
        expected_von: String,
        /// Its ON id.
        expected_on_id: OnId,
        /// The VON named in the message.
        found_von: String,
        /// Its ON id.
        found_on_id: OnId,
    },
    /// The message is wrapped for another member's key.
    #[error("wrapped key is for X25519 key {found}, this member's is {expected}")]
    WrongRecipient {
        /// This member's public key.
        expected: NoisePublic,
        /// The recipient named in the message.
        found: NoisePublic,
    },
    /// The epoch is not newer than the one installed: a replay or a reordering.
    #[error("wrapped key is for epoch {}, but epoch {} is already installed; epochs only move forward", .epoch.0, .installed.0)]
    StaleEpoch {
        /// Epoch in the message.
        epoch: Epoch,
        /// Highest epoch already installed.
        installed: Epoch,
    },
    /// Noise refused the message: altered, or not made by the key manager.
    #[error("wrapped key for epoch {} does not authenticate: altered in transit or not from the key manager {keymgr}", .epoch.0)]
    Unauthenticated {
        /// Epoch in the (unauthenticated) header.
        epoch: Epoch,
        /// The key manager key it was checked against.
        keymgr: NoisePublic,
    },
    /// The payload names a cipher this code does not know.
    #[error("wrapped key names unknown cipher code {code}; upgrade von")]
    UnknownCipher {
        /// The cipher byte.
        code: u8,
    },
    /// snow failed while wrapping (a bug or a bad key, never the peer's fault).
    #[error("Noise failed while wrapping: {reason}")]
    Noise {
        /// What snow said.
        reason: String,
    },
}

/// The key manager's side: wraps group keys of one VON.
#[derive(Debug)]
pub struct Wrapper {
    keymgr: NoiseSecret,
    von: VonName,
    on_id: OnId,
}

/// A member's side: opens group keys wrapped for it.
#[derive(Debug)]
pub struct Recipient {
    own: NoiseSecret,
    own_public: NoisePublic,
    keymgr: NoisePublic,
    von: VonName,
    on_id: OnId,
}

/// An unwrapped group key and its epoch.
#[derive(Debug)]
pub struct Unwrapped {
    /// The epoch the key is for.
    pub epoch: Epoch,
    /// The key with its cipher.
    pub key: GroupKey,
}

impl Wrapper {
    /// The key manager of `von` with its X25519 secret.
    pub fn new(keymgr: NoiseSecret, von: VonName, on_id: OnId) -> Self {
        Self { keymgr, von, on_id }
    }

    /// Wraps `key` for `epoch` to the member whose certificate carries `recipient`.
    pub fn wrap(
        &self,
        recipient: &NoisePublic,
        epoch: Epoch,
        key: &GroupKey,
    ) -> Result<Vec<u8>, WrapError> {
        self.wrap_inner(recipient, epoch, key, None)
    }

    /// Wraps with a fixed ephemeral key, for the known-answer vectors only:
    /// reusing an ephemeral key across messages breaks sender forward secrecy.
    #[doc(hidden)]
    pub fn danger_wrap_with_fixed_ephemeral(
        &self,
        recipient: &NoisePublic,
        epoch: Epoch,
        key: &GroupKey,
        ephemeral: &NoiseSecret,
    ) -> Result<Vec<u8>, WrapError> {
        self.wrap_inner(recipient, epoch, key, Some(ephemeral))
    }

    fn wrap_inner(
        &self,
        recipient: &NoisePublic,
        epoch: Epoch,
        key: &GroupKey,
        ephemeral: Option<&NoiseSecret>,
    ) -> Result<Vec<u8>, WrapError> {
        let mut out = header(self.on_id, epoch, recipient, &self.von);
        let mut builder = Builder::new(params())
            .local_private_key(self.keymgr.as_bytes())
            .and_then(|b| b.remote_public_key(recipient.as_bytes()))
            .and_then(|b| b.prologue(&out))
            .map_err(noise)?;
        if let Some(e) = ephemeral {
            builder = builder.fixed_ephemeral_key_for_testing_only(e.as_bytes());
        }
        let mut hs = builder.build_initiator().map_err(noise)?;
        let mut payload = Zeroizing::new([0u8; PAYLOAD_LEN]);
        payload[0] = key.cipher().flag_bits();
        payload[1..].copy_from_slice(key.secret_bytes());
        let start = out.len();
        out.resize(start + NOISE_LEN, 0);
        let n = hs
            .write_message(payload.as_slice(), &mut out[start..])
            .map_err(noise)?;
        debug_assert_eq!(n, NOISE_LEN);
        out.truncate(start + n);
        Ok(out)
    }
}

impl Recipient {
    /// A member of `von` with its X25519 secret, expecting keys from the key
    /// manager whose certificate carries `keymgr`.
    pub fn new(own: NoiseSecret, keymgr: NoisePublic, von: VonName, on_id: OnId) -> Self {
        let own_public = own.public();
        Self {
            own,
            own_public,
            keymgr,
            von,
            on_id,
        }
    }

    /// Opens a wrapped key. `installed` is the newest epoch this member has
    /// installed; a key for that epoch or an older one is refused. Opening
    /// does not install: the caller installs on the key manager's commit.
    pub fn unwrap(&self, msg: &[u8], installed: Option<Epoch>) -> Result<Unwrapped, WrapError> {
        if msg.len() < MIN_WRAPPED_LEN {
            return Err(WrapError::Length {
                len: msg.len(),
                expected: MIN_WRAPPED_LEN,
            });
        }
        if msg[0] != WRAP_VERSION {
            return Err(WrapError::Version {
                found: msg[0],
                supported: WRAP_VERSION,
            });
        }
        let be32 = |at: usize| u32::from_be_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
        let on_id = OnId(be32(1));
        let epoch = Epoch(be32(5));
        let mut recipient = [0u8; KEY_LEN];
        recipient.copy_from_slice(&msg[9..41]);
        let recipient = NoisePublic::from_bytes(recipient);
        let name_len = usize::from(msg[41]);
        let header_len = FIXED_HEADER + name_len;
        if msg.len() != header_len + NOISE_LEN {
            return Err(WrapError::Length {
                len: msg.len(),
                expected: header_len + NOISE_LEN,
            });
        }
        let name = &msg[FIXED_HEADER..header_len];
        if on_id != self.on_id || name != self.von.as_str().as_bytes() {
            return Err(WrapError::WrongVon {
                expected_von: self.von.to_string(),
                expected_on_id: self.on_id,
                found_von: String::from_utf8_lossy(name).into_owned(),
                found_on_id: on_id,
            });
        }
        if recipient != self.own_public {
            return Err(WrapError::WrongRecipient {
                expected: self.own_public,
                found: recipient,
            });
        }
        if let Some(installed) = installed.filter(|&i| epoch <= i) {
            return Err(WrapError::StaleEpoch { epoch, installed });
        }
        let refused = || WrapError::Unauthenticated {
            epoch,
            keymgr: self.keymgr,
        };
        let mut hs = Builder::new(params())
            .local_private_key(self.own.as_bytes())
            .and_then(|b| b.remote_public_key(self.keymgr.as_bytes()))
            .and_then(|b| b.prologue(&msg[..header_len]))
            .and_then(|b| b.build_responder())
            .map_err(|_| refused())?;
        let mut payload = Zeroizing::new([0u8; NOISE_LEN]);
        let n = hs
            .read_message(&msg[header_len..], payload.as_mut_slice())
            .map_err(|_| refused())?;
        if n != PAYLOAD_LEN {
            return Err(refused());
        }
        let cipher = Cipher::from_flag_bits(payload[0])
            .map_err(|_| WrapError::UnknownCipher { code: payload[0] })?;
        let mut secret = Zeroizing::new([0u8; crate::aead::KEY_LEN]);
        secret.copy_from_slice(&payload[1..PAYLOAD_LEN]);
        Ok(Unwrapped {
            epoch,
            key: GroupKey::new(cipher, *secret),
        })
    }

    /// This member's X25519 public key, as its certificate should carry it.
    pub fn public(&self) -> NoisePublic {
        self.own_public
    }
}

fn header(on_id: OnId, epoch: Epoch, recipient: &NoisePublic, von: &VonName) -> Vec<u8> {
    let name = von.as_str().as_bytes();
    let mut out = Vec::with_capacity(FIXED_HEADER + name.len() + NOISE_LEN);
    out.push(WRAP_VERSION);
    out.extend_from_slice(&on_id.0.to_be_bytes());
    out.extend_from_slice(&epoch.0.to_be_bytes());
    out.extend_from_slice(recipient.as_bytes());
    // VonName is at most 11 bytes, so the length fits a byte.
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out
}

fn params() -> snow::params::NoiseParams {
    // The constant is a valid pattern name; the wrap tests exercise it.
    NOISE_PARAMS.parse().expect("NOISE_PARAMS parses")
}

fn noise(e: snow::Error) -> WrapError {
    WrapError::Noise {
        reason: e.to_string(),
    }
}
