//! Sealing and opening frames in the caller's buffer.
//!
//! Seal flow (sender):
//! 1. the caller reserves [`HEADER_LEN`] bytes, writes the inner packet after
//!    them and leaves [`TAG_LEN`] bytes of room at the end;
//! 2. [`FrameKey::seal_in_place`] writes the header (with the key's cipher in
//!    the flags), encrypts the packet in place under the nonce
//!    `sender ‖ seq` with the header as associated data, and appends the tag.
//!
//! Open flow (receiver), after the replay window's read-only check:
//! 1. [`FrameKey::open_in_place`] parses the header, refuses a frame that names
//!    another cipher or a sequence past the hard limit, and verifies the tag;
//! 2. the caller marks the window and reads the plaintext at the returned range.
//!
//! Nothing here allocates. The nonce has no random part, so a (sender, seq)
//! pair must never repeat under one key: [`crate::sequence`] guarantees that.

use core::fmt;
use core::ops::Range;
use core::str::FromStr;

use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::frame::{
    Flags, Frame, FrameError, HEADER_LEN, Header, MAX_FRAME_LEN, MemberId, OVERHEAD, TAG_LEN,
};
use crate::sequence;

/// Length of a group key's secret.
pub const KEY_LEN: usize = 32;
/// Length of the AEAD nonce: sender id (4 bytes) then sequence (8 bytes).
pub const NONCE_LEN: usize = 12;
/// Longest inner packet a frame can carry.
pub const MAX_PLAINTEXT_LEN: usize = MAX_FRAME_LEN - OVERHEAD;

/// The AEAD a VON uses. It travels with the group key wherever the key is
/// delivered (static view file, wrapped key) and is named in every frame's
/// flags, so both ends always agree or fail with [`AeadError::CipherMismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-256-GCM: the default, fastest where AES-NI and CLMUL exist.
    Aes256Gcm,
    /// ChaCha20-Poly1305: for CPUs without AES instructions.
    ChaCha20Poly1305,
}

impl Cipher {
    /// The cipher used when none is configured; chosen by measurement, see
    /// `docs/performance.md`.
    pub const DEFAULT: Cipher = Cipher::Aes256Gcm;
    /// Every cipher, for tests and for listing choices in errors.
    pub const ALL: [Cipher; 2] = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305];

    /// The text form used in config files and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// The value of the cipher bits in a frame's flags.
    pub fn flag_bits(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 0,
            Cipher::ChaCha20Poly1305 => 1,
        }
    }

    /// Reads the cipher bits of a frame's flags.
    pub fn from_flag_bits(value: u8) -> Result<Cipher, FrameError> {
        match value {
            0 => Ok(Cipher::Aes256Gcm),
            1 => Ok(Cipher::ChaCha20Poly1305),
            other => Err(FrameError::UnknownCipher { value: other }),
        }
    }

    fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            Cipher::Aes256Gcm => &AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
        }
    }
}

impl Default for Cipher {
    fn default() -> Self {
        Cipher::DEFAULT
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cipher {
    type Err = AeadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| AeadError::UnknownCipherName {
                name: s.chars().take(40).collect(),
            })
    }
}

/// A VON's group key for one epoch: the cipher and 32 secret bytes, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct GroupKey {
    #[zeroize(skip)]
    cipher: Cipher,
    secret: [u8; KEY_LEN],
}

impl GroupKey {
    /// A key from its cipher and secret bytes.
    pub fn new(cipher: Cipher, secret: [u8; KEY_LEN]) -> Self {
        GroupKey { cipher, secret }
    }

    /// A key from a slice, as read from a file or an unwrapped message.
    pub fn from_slice(cipher: Cipher, secret: &[u8]) -> Result<Self, AeadError> {
        let secret: [u8; KEY_LEN] = secret
            .try_into()
            .map_err(|_| AeadError::KeyLength { len: secret.len() })?;
        Ok(GroupKey::new(cipher, secret))
    }

    /// The cipher this key is for.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// The secret bytes, for wrapping the key to a member. Never log them.
    pub fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }
}

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupKey")
            .field("cipher", &self.cipher)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    /// The frame's header is malformed.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// The frame names another cipher than the receiver's key.
    #[error(
        "frame sealed under {frame} but the key for this epoch is {key}; every member of a VON must use the cipher its group key was issued with"
    )]
    CipherMismatch {
        /// Cipher named in the frame's flags.
        frame: Cipher,
        /// Cipher of the receiver's key.
        key: Cipher,
    },
    /// The tag did not verify: forged, corrupted, or sealed under another key.
    #[error(
        "frame from sender {sender} seq {seq} failed authentication (forged, corrupted, or sealed under another key for this epoch)"
    )]
    Authentication {
        /// Sender id claimed by the header.
        sender: u32,
        /// Sequence claimed by the header.
        seq: u64,
    },
    /// The sequence number is past the hard limit for one key.
    #[error(transparent)]
    Sequence(#[from] sequence::SequenceError),
    /// The caller's buffer cannot hold header, plaintext and tag.
    #[error(
        "buffer of {len} bytes cannot hold a {needed}-byte frame; reserve {HEADER_LEN} bytes before and {TAG_LEN} after the packet"
    )]
    BufferTooSmall {
        /// Buffer length.
        len: usize,
        /// Bytes the frame needs.
        needed: usize,
    },
    /// The inner packet is too long for one UDP datagram.
    #[error("inner packet of {len} bytes exceeds the {MAX_PLAINTEXT_LEN}-byte maximum")]
    PlaintextTooLong {
        /// Plaintext length.
        len: usize,
    },
    /// A key of the wrong length.
    #[error("group key is {len} bytes, must be {KEY_LEN}")]
    KeyLength {
        /// Length given.
        len: usize,
    },
    /// A cipher name that is not known.
    #[error("unknown cipher {name:?}; use \"aes-256-gcm\" or \"chacha20-poly1305\"")]
    UnknownCipherName {
        /// The name given (at most 40 characters of it).
        name: String,
    },
}

/// The AEAD nonce of a frame: sender id then sequence, both big-endian.
/// Members share one group key, so the sender id keeps their nonces apart.
pub fn nonce_bytes(sender: MemberId, seq: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..4].copy_from_slice(&sender.0.to_be_bytes());
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// A group key ready to seal and open frames.
///
/// The raw secret is wiped when the [`GroupKey`] drops; ring's expanded key
/// schedule held here is not wiped by ring (it offers no hook), see
/// `docs/crypto.md`.
pub struct FrameKey {
    cipher: Cipher,
    key: LessSafeKey,
}

impl FrameKey {
    /// Expands `key` for its cipher.
    pub fn new(key: &GroupKey) -> Self {
        // ring refuses only a wrong key length; KEY_LEN is right for both ciphers.
        let unbound = UnboundKey::new(key.cipher.algorithm(), &key.secret)
            .unwrap_or_else(|_| unreachable!("32-byte keys fit both AEADs"));
        FrameKey {
            cipher: key.cipher,
            key: LessSafeKey::new(unbound),
        }
    }

    /// The cipher this key seals with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Seals the frame in `buf`, laid out as `[HEADER_LEN room][plaintext][TAG_LEN room]`,
    /// and returns the frame's length (`plaintext_len + OVERHEAD`).
    ///
    /// The flags written are always this key's cipher, whatever `header.flags`
    /// says, so a frame can never name a cipher other than the one sealing it.
    pub fn seal_in_place(
        &self,
        header: &Header,
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, AeadError> {
        if plaintext_len > MAX_PLAINTEXT_LEN {
            return Err(AeadError::PlaintextTooLong { len: plaintext_len });
        }
        let needed = plaintext_len + OVERHEAD;
        if buf.len() < needed {
            return Err(AeadError::BufferTooSmall {
                len: buf.len(),
                needed,
            });
        }
        sequence::check_receivable(header.seq)?;
        let header = Header {
            flags: Flags::new(self.cipher),
            ..*header
        };
        let aad = header.to_bytes();
        let (head, rest) = buf[..needed].split_at_mut(HEADER_LEN);
        head.copy_from_slice(&aad);
        let (plaintext, tag_room) = rest.split_at_mut(plaintext_len);
        let nonce = Nonce::assume_unique_for_key(nonce_bytes(header.sender, header.seq));
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&aad), plaintext)
            // ring fails only past the AEAD's per-call length limit (~2^32 blocks), far above MAX_PLAINTEXT_LEN.
            .map_err(|_| AeadError::PlaintextTooLong { len: plaintext_len })?;
        tag_room.copy_from_slice(tag.as_ref());
        Ok(needed)
    }

    /// Opens the frame that fills `buf` exactly and returns where the plaintext
    /// now lies. On any error the payload bytes of `buf` are unspecified.
    pub fn open_in_place(&self, buf: &mut [u8]) -> Result<Range<usize>, AeadError> {
        let header = Header::parse(&Frame::new_checked(&*buf)?)?;
        let named = header.flags.cipher();
        if named != self.cipher {
            return Err(AeadError::CipherMismatch {
                frame: named,
                key: self.cipher,
            });
        }
        sequence::check_receivable(header.seq)?;
        let len = buf.len();
        let (aad, in_out) = buf.split_at_mut(HEADER_LEN);
        let nonce = Nonce::assume_unique_for_key(nonce_bytes(header.sender, header.seq));
        self.key
            .open_in_place(nonce, Aad::from(&*aad), in_out)
            .map_err(|_| AeadError::Authentication {
                sender: header.sender.0,
                seq: header.seq,
            })?;
        Ok(HEADER_LEN..len - TAG_LEN)
    }
}

impl fmt::Debug for FrameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameKey")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}
