//! A VON's prefixes and a member's addresses, one per IP family: an IPv4
//! VON, an IPv6 VON, or a dual-stack one with both.
//!
//! Written as one string (`prefix = "100.64.0.0/24"`, the first release's
//! form, or `prefix = "fd00:7::/64"` for an IPv6-only VON) or a list of two
//! of different families (`prefix = ["100.64.0.0/24", "fd00:7::/64"]`); a
//! member's `address` follows the same rule. The family is read from each
//! value, so no key names a family and a file never says it twice.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::{Prefix, ValueError};

/// IPv6 ranges no VON prefix may overlap: link-local (the kernel's own
/// traffic, dropped at the edge), multicast (carried to every member),
/// IPv4-mapped (would alias the IPv4 side) and loopback.
const RESERVED6: [(&str, u8); 4] = [
    ("fe80::", 10),
    ("ff00::", 8),
    ("::ffff:0.0.0.0", 96),
    ("::1", 128),
];

/// The prefixes of a VON: at most one per family, at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VonPrefixes {
    v4: Option<Prefix>,
    v6: Option<Prefix>,
}

impl VonPrefixes {
    /// The IPv4 prefix, if the VON carries IPv4.
    pub fn v4(self) -> Option<Prefix> {
        self.v4
    }

    /// The IPv6 prefix, if the VON carries IPv6.
    pub fn v6(self) -> Option<Prefix> {
        self.v6
    }

    /// The prefix of `addr`'s family, if the VON has one.
    pub fn of(self, addr: IpAddr) -> Option<Prefix> {
        if addr.is_ipv4() { self.v4 } else { self.v6 }
    }

    /// Each prefix, IPv4 first.
    pub fn iter(self) -> impl Iterator<Item = Prefix> {
        self.v4.into_iter().chain(self.v6)
    }

    /// Whether both families are present.
    pub fn dual_stack(self) -> bool {
        self.v4.is_some() && self.v6.is_some()
    }

    fn from_list(items: Vec<Prefix>) -> Result<Self, ValueError> {
        let mut p = VonPrefixes { v4: None, v6: None };
        for item in &items {
            let slot = if item.network().is_ipv4() {
                &mut p.v4
            } else {
                check6(*item)?;
                &mut p.v6
            };
            if let Some(first) = slot.replace(*item) {
                return Err(ValueError::new(format_args!(
                    "\"{first}\" and \"{item}\" are of one family; a VON has at most one IPv4 and one IPv6 prefix (example: [\"100.64.0.0/24\", \"fd00:7::/64\"])"
                )));
            }
        }
        if items.is_empty() {
            return Err(ValueError::new(
                "the list is empty; give one prefix per family (example: [\"100.64.0.0/24\", \"fd00:7::/64\"])",
            ));
        }
        Ok(p)
    }
}

fn check6(p: Prefix) -> Result<(), ValueError> {
    for (net, len) in RESERVED6 {
        let r: Prefix = format!("{net}/{len}")
            .parse()
            .unwrap_or_else(|_| unreachable!("valid reserved prefix"));
        if r.contains(p.network()) || p.contains(r.network()) {
            return Err(ValueError::new(format_args!(
                "\"{p}\" overlaps {r}, which no VON may use (pick a unique local prefix, e.g. \"fd00:7::/64\")"
            )));
        }
    }
    Ok(())
}

impl fmt::Display for VonPrefixes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        list(f, self.iter())
    }
}

/// A member's VON addresses: at most one per family, at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VonAddresses {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

impl VonAddresses {
    /// The IPv4 address.
    pub fn v4(self) -> Option<Ipv4Addr> {
        self.v4
    }

    /// The IPv6 address.
    pub fn v6(self) -> Option<Ipv6Addr> {
        self.v6
    }

    /// Each address, IPv4 first.
    pub fn iter(self) -> impl Iterator<Item = IpAddr> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
    }

    fn from_list(items: Vec<IpAddr>) -> Result<Self, ValueError> {
        let mut a = VonAddresses { v4: None, v6: None };
        for item in &items {
            let first = match item {
                IpAddr::V4(x) => a.v4.replace(*x).map(IpAddr::V4),
                IpAddr::V6(x) => a.v6.replace(*x).map(IpAddr::V6),
            };
            if let Some(first) = first {
                return Err(ValueError::new(format_args!(
                    "\"{first}\" and \"{item}\" are of one family; a member has at most one IPv4 and one IPv6 address (example: [\"100.64.0.1\", \"fd00:7::1\"])"
                )));
            }
        }
        if items.is_empty() {
            return Err(ValueError::new(
                "the list is empty; give the member's address (example: \"100.64.0.1\" or [\"100.64.0.1\", \"fd00:7::1\"])",
            ));
        }
        Ok(a)
    }
}

impl fmt::Display for VonAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        list(f, self.iter())
    }
}

fn list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = T>,
) -> fmt::Result {
    let items: Vec<String> = items.map(|i| i.to_string()).collect();
    match items.as_slice() {
        [one] => f.write_str(one),
        many => write!(
            f,
            "[{}]",
            many.iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn parse_address(text: &str) -> Result<IpAddr, ValueError> {
    text.parse().map_err(|_| {
        ValueError::new(format_args!(
            "{text:?} is not an IP address (example: \"100.64.0.1\" or \"fd00:7::1\")"
        ))
    })
}

/// Reads one string or a list of strings, each through `parse`, and the
/// list through `build`.
struct OneOrList<T, U> {
    parse: fn(&str) -> Result<T, ValueError>,
    build: fn(Vec<T>) -> Result<U, ValueError>,
    what: &'static str,
}

impl<'de, T, U> Visitor<'de> for OneOrList<T, U> {
    type Value = U;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} or a list of one per family", self.what)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<U, E> {
        let one = (self.parse)(v).map_err(E::custom)?;
        (self.build)(vec![one]).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<U, A::Error> {
        let mut items = Vec::new();
        while let Some(text) = seq.next_element::<String>()? {
            items.push((self.parse)(&text).map_err(de::Error::custom)?);
        }
        (self.build)(items).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for VonPrefixes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOrList {
            parse: |t| t.parse::<Prefix>(),
            build: VonPrefixes::from_list,
            what: "a prefix",
        })
    }
}

impl<'de> Deserialize<'de> for VonAddresses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOrList {
            parse: parse_address,
            build: VonAddresses::from_list,
            what: "an IP address",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(toml_value: &str) -> Result<VonPrefixes, String> {
        #[derive(Deserialize)]
        struct T {
            p: VonPrefixes,
        }
        toml::from_str::<T>(&format!("p = {toml_value}"))
            .map(|t| t.p)
            .map_err(|e| e.message().to_owned())
    }

    fn addresses(toml_value: &str) -> Result<VonAddresses, String> {
        #[derive(Deserialize)]
        struct T {
            a: VonAddresses,
        }
        toml::from_str::<T>(&format!("a = {toml_value}"))
            .map(|t| t.a)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn one_prefix_or_one_per_family() {
        let v4 = prefixes("\"100.64.0.0/24\"").unwrap();
        assert_eq!(
            (v4.v4().unwrap().to_string(), v4.v6()),
            ("100.64.0.0/24".into(), None)
        );
        let v6 = prefixes("\"fd00:7::/64\"").unwrap();
        assert_eq!(
            (v6.v4(), v6.v6().unwrap().to_string()),
            (None, "fd00:7::/64".into())
        );
        let both = prefixes("[\"fd00:7::/64\", \"100.64.0.0/24\"]").unwrap();
        assert!(both.dual_stack());
        assert_eq!(both.to_string(), "[\"100.64.0.0/24\", \"fd00:7::/64\"]");
        assert_eq!(v6.to_string(), "fd00:7::/64");
        assert!(
            prefixes("[\"100.64.0.0/24\", \"100.65.0.0/24\"]")
                .unwrap_err()
                .contains("are of one family")
        );
        assert!(prefixes("[]").unwrap_err().contains("the list is empty"));
        assert!(
            prefixes("[\"fd00:7::1/64\"]")
                .unwrap_err()
                .contains("host bits set")
        );
        for reserved in ["fe80::/64", "ff02::/16", "::ffff:0:0/112", "::/0"] {
            assert!(
                prefixes(&format!("\"{reserved}\""))
                    .unwrap_err()
                    .contains("which no VON may use"),
                "{reserved}"
            );
        }
        assert!(prefixes("7").is_err());
    }

    #[test]
    fn one_address_or_one_per_family() {
        let a = addresses("[\"100.64.0.1\", \"fd00:7::1\"]").unwrap();
        assert_eq!(a.v4(), Some(Ipv4Addr::new(100, 64, 0, 1)));
        assert_eq!(a.v6(), Some("fd00:7::1".parse().unwrap()));
        assert_eq!(
            addresses("\"100.64.0.1\"").unwrap().to_string(),
            "100.64.0.1"
        );
        assert!(
            addresses("[\"fd00:7::1\", \"fd00:7::2\"]")
                .unwrap_err()
                .contains("are of one family")
        );
        assert!(
            addresses("\"100.64.0.x\"")
                .unwrap_err()
                .contains("\"100.64.0.x\" is not an IP address")
        );
    }
}
