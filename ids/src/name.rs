//! [`UnderlayName`]: how members and operators refer to an underlay.

use std::fmt;
use std::str::FromStr;

use crate::IdError;

/// Longest underlay name, so it fits in `von_<name>` style labels and logs.
const MAX_LEN: usize = 15;

/// An underlay's name as written in `[underlay.NAME]`, the same on every
/// member of a VON: 1 to 15 of `a-z 0-9 -`, starting with a letter (`a`,
/// `b`, `lan1`, `mpls`). Stored inline, so it is `Copy` and costs no
/// allocation in status and metrics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnderlayName {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl UnderlayName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (checked in `from_str`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

impl FromStr for UnderlayName {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, IdError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_LEN
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if !ok {
            return Err(IdError(format!(
                "{text:?} is not an underlay name: use 1 to {MAX_LEN} of a-z, 0-9 and '-', starting with a letter (examples: \"a\", \"b\", \"lan1\")"
            )));
        }
        let mut bytes = [0; MAX_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(Self {
            len: text.len() as u8,
            bytes,
        })
    }
}

impl fmt::Display for UnderlayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for UnderlayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for UnderlayName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for UnderlayName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rules() {
        for good in ["a", "b", "lan1", "mpls-2", "abcdefghijklmno"] {
            assert_eq!(good.parse::<UnderlayName>().unwrap().as_str(), good);
        }
        for bad in ["", "A", "1a", "-a", "a_b", "a.b", "abcdefghijklmnop", "é"] {
            let e = bad.parse::<UnderlayName>().unwrap_err();
            assert!(e.0.contains("not an underlay name"), "{e}");
        }
    }

    #[test]
    fn order_is_by_name() {
        let a: UnderlayName = "a".parse().unwrap();
        let b: UnderlayName = "b".parse().unwrap();
        let lan: UnderlayName = "lan".parse().unwrap();
        assert!(a < b && b < lan);
        let json = serde_json::to_string(&lan).unwrap();
        assert_eq!(json, "\"lan\"");
        assert_eq!(serde_json::from_str::<UnderlayName>(&json).unwrap(), lan);
        assert!(serde_json::from_str::<UnderlayName>("\"LAN\"").is_err());
    }
}
