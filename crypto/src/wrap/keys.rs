//! X25519 static keys for Noise: the member's (whose public half its
//! certificate carries) and the key manager's.
//!
//! The secret is zeroized on drop and never printed; its file form is one
//! line of 64 hex digits (`NAME.noise.key`, see `docs/certificates.md`).

use std::fmt;

use curve25519_dalek::montgomery::MontgomeryPoint;
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::WrapError;

/// Length of an X25519 key, secret or public.
pub const KEY_LEN: usize = 32;

/// An X25519 secret key. Zeroized on drop; `Debug` shows only the public half.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct NoiseSecret([u8; KEY_LEN]);

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoisePublic([u8; KEY_LEN]);

impl NoiseSecret {
    /// A fresh secret from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps raw secret bytes (clamping happens inside X25519).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The secret bytes, for Noise and for writing the key file.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The matching public key.
    pub fn public(&self) -> NoisePublic {
        NoisePublic(MontgomeryPoint::mul_base_clamped(self.0).to_bytes())
    }

    /// The key file's text: 64 lowercase hex digits and a newline.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(hex::encode(self.0));
        text.push('\n');
        text
    }

    /// Reads the key file's text; surrounding whitespace is ignored.
    pub fn from_file_text(text: &str) -> Result<Self, WrapError> {
        let digits = text.trim();
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(digits, bytes.as_mut()).map_err(|_| WrapError::BadKeyText {
            what: "X25519 secret key",
            len: digits.len(),
        })?;
        Ok(Self(*bytes))
    }
}

impl NoisePublic {
    /// Wraps raw public key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The public key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, WrapError> {
        let digits = text.trim();
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(digits, &mut bytes).map_err(|_| WrapError::BadKeyText {
            what: "X25519 public key",
            len: digits.len(),
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for NoiseSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoiseSecret(public {})", self.public())
    }
}

impl fmt::Debug for NoisePublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoisePublic({self})")
    }
}

/// Lowercase hex, the form `von cert show` prints and errors carry.
impl fmt::Display for NoisePublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 section 6.1: Alice's key pair.
    #[test]
    fn public_matches_rfc7748() {
        let mut secret = [0u8; KEY_LEN];
        hex::decode_to_slice(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
            &mut secret,
        )
        .unwrap();
        assert_eq!(
            NoiseSecret::from_bytes(secret).public().to_string(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn file_text_round_trip_and_refusal() {
        let s = NoiseSecret::generate();
        let back = NoiseSecret::from_file_text(&s.to_file_text()).unwrap();
        assert_eq!(back.public(), s.public());
        assert!(matches!(
            NoiseSecret::from_file_text("abcd"),
            Err(WrapError::BadKeyText { len: 4, .. })
        ));
        assert!(!format!("{s:?}").contains(&hex::encode(s.as_bytes())));
    }
}
