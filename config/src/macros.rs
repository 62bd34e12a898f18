//! Serde plumbing shared by the newtypes: each type parses itself with
//! `FromStr` (or from an `i64`), and serde goes through that parser so TOML,
//! the CLI and tests see the same checks and the same messages.

/// Serde for a type with `FromStr<Err = ValueError>` and `Display`: it is
/// written in TOML as a string.
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl TryFrom<String> for $ty {
            type Error = $crate::ValueError;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// Serde for a type with `TryFrom<i64, Error = ValueError>` and `Display`:
/// it is written in TOML as an integer.
macro_rules! serde_via_int {
    ($ty:ty, $inner:ty) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = <i64 as serde::Deserialize>::deserialize(d)?;
                <$ty>::try_from(n).map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$inner as serde::Serialize>::serialize(&self.0, s)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

pub(crate) use serde_via_int;
pub(crate) use serde_via_str;
