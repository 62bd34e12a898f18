//! The static view's key material: cipher name and a 256-bit hex key.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroize;

use crate::ValueError;
use crate::macros::serde_via_str;

/// The AEAD a VON uses. `von-crypto` has its own enum; the agent maps this
/// one onto it, so config does not depend on the crypto crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cipher {
    /// `aes-256-gcm`: fastest where the CPU has AES instructions.
    #[default]
    Aes256Gcm,
    /// `chacha20-poly1305`: fastest without them.
    ChaCha20Poly1305,
}

impl FromStr for Cipher {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        match text {
            "aes-256-gcm" => Ok(Self::Aes256Gcm),
            "chacha20-poly1305" => Ok(Self::ChaCha20Poly1305),
            _ => Err(ValueError::new(format_args!(
                "{text:?} is not a cipher (use \"aes-256-gcm\" or \"chacha20-poly1305\")"
            ))),
        }
    }
}

impl fmt::Display for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Aes256Gcm => "aes-256-gcm",
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
        })
    }
}

serde_via_str!(Cipher);

/// A 256-bit key written as 64 hex digits; wiped on drop, never printed.
///
/// Errors describe the text's shape but never echo it: a nearly right key
/// is still a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct HexKey([u8; 32]);

impl HexKey {
    /// Wraps raw key bytes (for tools that generate a view).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key bytes, for handing to the crypto crate.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for HexKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for HexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HexKey(<redacted>)")
    }
}

/// Written out in full: only a tool generating a view file should display it.
impl fmt::Display for HexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for HexKey {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        const FIX: &str = "generate one with: openssl rand -hex 32";
        if text.len() != 64 {
            return Err(ValueError::new(format_args!(
                "the key has {} characters, not 64 hex digits ({FIX})",
                text.chars().count()
            )));
        }
        let mut key = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                // Both digits are < 16, so the byte fits.
                (Some(hi), Some(lo)) => key[i] = (hi * 16 + lo) as u8,
                _ => {
                    key.zeroize();
                    return Err(ValueError::new(format_args!(
                        "the key has a non-hex character near position {} (use 0-9 and a-f only; {FIX})",
                        2 * i + 1
                    )));
                }
            }
        }
        Ok(Self(key))
    }
}

serde_via_str!(HexKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphers() {
        for c in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            assert_eq!(c.to_string().parse::<Cipher>().unwrap(), c);
        }
        assert_eq!(
            "aes-128-gcm".parse::<Cipher>().unwrap_err().to_string(),
            "\"aes-128-gcm\" is not a cipher (use \"aes-256-gcm\" or \"chacha20-poly1305\")"
        );
        assert!("AES-256-GCM".parse::<Cipher>().is_err());
    }

    #[test]
    fn hex_keys() {
        let text = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let key: HexKey = text.parse().unwrap();
        assert_eq!(key.expose()[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(key.expose()[31], 0xff);
        assert_eq!(key.to_string(), text.to_lowercase());
        assert_eq!(format!("{key:?}"), "HexKey(<redacted>)");

        let short = text[..63].parse::<HexKey>().unwrap_err().to_string();
        assert_eq!(
            short,
            "the key has 63 characters, not 64 hex digits (generate one with: openssl rand -hex 32)"
        );
        let mut bad = text.to_owned();
        bad.replace_range(10..11, "g");
        let err = bad.parse::<HexKey>().unwrap_err().to_string();
        assert!(err.contains("position 11"), "{err}");
        assert!(
            !err.contains("0011223344"),
            "a key must never be echoed: {err}"
        );
        assert!("é".repeat(32).parse::<HexKey>().is_err());
    }
}
