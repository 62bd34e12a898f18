//! Names an operator writes: the VON's, its interface's and a member's.

use std::fmt;
use std::str::FromStr;

use crate::ValueError;
use crate::macros::serde_via_str;

/// Linux's limit on an interface name (IFNAMSIZ 16, less the NUL).
pub const IFNAME_MAX: usize = 15;

/// The prefix of a VON's default interface name.
pub const INTERFACE_PREFIX: &str = "von-";

/// A VON's name: 1 to 11 of `a-z`, `0-9`, `-`, not starting with `-`, so that
/// the default interface `von-<name>` fits Linux's 15 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VonName(String);

impl VonName {
    /// The longest name whose default interface still fits.
    pub const MAX_LEN: usize = IFNAME_MAX - INTERFACE_PREFIX.len();

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The default interface of this VON: `von-<name>`.
    pub fn default_interface(&self) -> InterfaceName {
        InterfaceName(format!("{INTERFACE_PREFIX}{}", self.0))
    }
}

impl FromStr for VonName {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        let ok_chars = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if text.is_empty() || text.len() > Self::MAX_LEN || !ok_chars || text.starts_with('-') {
            return Err(ValueError::new(format_args!(
                "{text:?} is not a VON name (use 1 to {} of a-z, 0-9 and \"-\", not starting with \"-\"; example: \"grid\")",
                Self::MAX_LEN
            )));
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for VonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serde_via_str!(VonName);

/// A Linux network interface name, checked as the kernel's `dev_valid_name`
/// does: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName(String);

impl InterfaceName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InterfaceName {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        if text.is_empty() || text.len() > IFNAME_MAX {
            return Err(ValueError::new(format_args!(
                "{text:?} is {} bytes; an interface name has 1 to {IFNAME_MAX} (Linux's limit; example: \"von-grid\")",
                text.len()
            )));
        }
        let bad = text
            .chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || !c.is_ascii());
        if let Some(c) = bad {
            return Err(ValueError::new(format_args!(
                "{text:?} contains {c:?}, which Linux refuses in an interface name (use a-z, 0-9, \"-\", \"_\", \".\"; example: \"von-grid\")"
            )));
        }
        if text == "." || text == ".." {
            return Err(ValueError::new(format_args!(
                "{text:?} is not an interface name (example: \"von-grid\")"
            )));
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serde_via_str!(InterfaceName);

/// A member's name (as in its certificate): 1 to 63 of `A-Z a-z 0-9 - . _`,
/// starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberName(String);

impl MemberName {
    /// The longest member name.
    pub const MAX_LEN: usize = 63;

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MemberName {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        let ok_chars = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        let ok_start = text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok_start || !ok_chars || text.len() > Self::MAX_LEN {
            return Err(ValueError::new(format_args!(
                "{text:?} is not a member name (use 1 to {} of A-Z, a-z, 0-9, \"-\", \".\", \"_\", starting with a letter or digit; example: \"h1\")",
                Self::MAX_LEN
            )));
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

serde_via_str!(MemberName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn von_names() {
        for good in ["grid", "a", "0", "med-icu-2", "abcdefghijk"] {
            let name: VonName = good.parse().unwrap();
            assert_eq!(name.as_str(), good);
            assert!(name.default_interface().as_str().len() <= IFNAME_MAX);
        }
        for bad in [
            "",
            "Grid",
            "-grid",
            "grid_1",
            "abcdefghijkl",
            "gr id",
            "grïd",
        ] {
            let err = bad.parse::<VonName>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("example: \"grid\""), "{err}");
        }
        assert_eq!(
            "grid"
                .parse::<VonName>()
                .unwrap()
                .default_interface()
                .as_str(),
            "von-grid"
        );
    }

    #[test]
    fn interface_names() {
        for good in ["von-grid", "eth0", "a", "fifteen-bytes-x", "v.1_x"] {
            assert_eq!(good.parse::<InterfaceName>().unwrap().as_str(), good);
        }
        let long = "sixteen-bytes-xx".parse::<InterfaceName>().unwrap_err();
        assert_eq!(
            long.to_string(),
            "\"sixteen-bytes-xx\" is 16 bytes; an interface name has 1 to 15 (Linux's limit; example: \"von-grid\")"
        );
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\tb"] {
            let err = bad.parse::<InterfaceName>().unwrap_err().to_string();
            assert!(err.contains("example: \"von-grid\""), "{err}");
        }
    }

    #[test]
    fn member_names() {
        for good in ["h1", "H1", "host.example", "a_b-c", &"x".repeat(63)] {
            assert_eq!(good.parse::<MemberName>().unwrap().as_str(), good);
        }
        for bad in ["", "-h1", ".h", "h 1", "h/1", &"x".repeat(64)] {
            let err = bad.parse::<MemberName>().unwrap_err().to_string();
            assert!(err.contains("not a member name"), "{err}");
        }
    }
}
