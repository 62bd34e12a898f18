//! The static view file: the same file on every member of a VON run without
//! a key manager ("static mode"): ON id, epoch, key, prefix and members.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Origin, parse_toml, read};
use crate::{
    Cipher, ConfigError, Endpoint, Epoch, HexKey, MemberId, MemberName, OnId, UnderlayEndpoints,
    UnderlayName, VonAddresses, VonPrefixes,
};

/// A VON's fixed membership and key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticView {
    /// The VON's ON id, first in every frame.
    pub on_id: OnId,
    /// The key epoch frames carry.
    pub epoch: Epoch,
    /// The AEAD (default `aes-256-gcm`).
    #[serde(default)]
    pub cipher: Cipher,
    /// The group key, 64 hex digits.
    pub key: HexKey,
    /// The VON's subnets: one IPv4 prefix, one IPv6 prefix, or a list of
    /// one of each (a dual-stack VON). The IPv4 broadcast address and IPv6
    /// multicast reach every member.
    pub prefix: VonPrefixes,
    /// The members, as `[[member]]` tables.
    #[serde(default, rename = "member")]
    pub members: Vec<Member>,
}

/// One member of a static view.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "MemberFile")]
pub struct Member {
    /// Its id, the frame's sender field.
    pub id: MemberId,
    /// Its name; an agent finds itself by it (`static.member`).
    pub name: MemberName,
    /// Its VON addresses, one inside each of the view's prefixes.
    pub address: VonAddresses,
    /// Where it receives, per underlay name.
    pub underlay: UnderlayEndpoints,
}

/// A `[[member]]` table as written: `underlay = { a = "...", b = "..." }`,
/// or the first release's `a = "..."` and `b = "..."`, which still read as
/// the underlays named `a` and `b`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFile {
    id: MemberId,
    name: MemberName,
    address: VonAddresses,
    underlay: Option<UnderlayEndpoints>,
    a: Option<Endpoint>,
    b: Option<Endpoint>,
}

impl TryFrom<MemberFile> for Member {
    type Error = String;
    fn try_from(m: MemberFile) -> Result<Self, String> {
        let underlay = match (m.underlay, m.a, m.b) {
            (Some(u), None, None) => u,
            (None, a, b) if a.is_some() || b.is_some() => {
                let named = |n: &str, e: Option<Endpoint>| {
                    e.map(|e| (n.parse::<UnderlayName>().expect("a valid name"), e.addr()))
                };
                UnderlayEndpoints::new(named("a", a).into_iter().chain(named("b", b)))
                    .map_err(|e| e.to_string())?
            }
            (Some(_), _, _) => {
                return Err(format!(
                    "member {:?} has both underlay = {{...}} and a/b (keep underlay = {{ a = \"IP:PORT\", b = \"IP:PORT\" }} only)",
                    m.name.as_str()
                ));
            }
            (None, _, _) => {
                return Err(format!(
                    "member {:?} has no endpoints (add underlay = {{ a = \"192.0.2.1:4789\", b = \"198.51.100.1:4789\" }}, one per underlay name)",
                    m.name.as_str()
                ));
            }
        };
        Ok(Member {
            id: m.id,
            name: m.name,
            address: m.address,
            underlay,
        })
    }
}

impl StaticView {
    /// Reads and checks a view file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        Self::from_toml_str(&read(path)?, &path.display().to_string())
    }

    /// Parses and checks `text`; errors name `origin` as the file.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let view: Self = parse_toml(text, origin)?;
        view.check(Origin(origin))?;
        Ok(view)
    }

    /// The member called `name`.
    pub fn member_named(&self, name: &MemberName) -> Option<&Member> {
        self.members.iter().find(|m| &m.name == name)
    }

    /// The member with id `id`.
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn check(&self, origin: Origin<'_>) -> Result<(), ConfigError> {
        if self.members.is_empty() {
            return Err(origin.field(
                "member",
                "the view has no members (add a [[member]] table per host; see packaging/examples/grid.view.toml)",
            ));
        }
        unique(origin, &self.members, "id", |m| m.id)?;
        unique(origin, &self.members, "name", |m| m.name.clone())?;
        for family in [4, 6] {
            let mut seen = HashMap::new();
            for (i, m) in self.members.iter().enumerate() {
                let Some(a) = m.address.iter().find(|a| a.is_ipv4() == (family == 4)) else {
                    continue;
                };
                if let Some(first) = seen.insert(a, i) {
                    return Err(origin.field(
                        format_args!("member[{i}].address"),
                        format_args!(
                            "\"{a}\" is also member[{first}]'s address (each member needs its own)"
                        ),
                    ));
                }
            }
        }
        // No endpoint twice in the view, on any underlay: two members (or
        // two underlays) sharing one would receive each other's copies.
        let mut endpoints = HashMap::new();
        for (i, m) in self.members.iter().enumerate() {
            for (name, e) in m.underlay.iter() {
                if let Some((first, first_name)) = endpoints.insert(e, (i, name)) {
                    return Err(origin.field(
                        format_args!("member[{i}].underlay.{name}"),
                        format_args!(
                            "\"{e}\" is also member[{first}]'s endpoint on underlay {first_name} (each member needs its own address on each underlay)"
                        ),
                    ));
                }
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            self.check_addresses(origin, i, m)?;
            for (name, e) in m.underlay.iter() {
                if e.ip().is_unspecified() || e.port() == 0 {
                    return Err(origin.field(
                        format_args!("member[{i}].underlay.{name}"),
                        format_args!(
                            "\"{e}\" cannot be reached by peers (write the member's own IP:PORT on underlay {name})"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl StaticView {
    /// Member `i`'s addresses: one per prefix of the view, each a host
    /// address inside the prefix of its family.
    fn check_addresses(&self, origin: Origin<'_>, i: usize, m: &Member) -> Result<(), ConfigError> {
        let field = format!("member[{i}].address");
        for address in m.address.iter() {
            let Some(prefix) = self.prefix.of(address) else {
                return Err(origin.field(
                    &field,
                    format_args!(
                        "\"{address}\" is of a family the VON has no prefix for (prefix = {}; add a prefix of that family to the list, or drop the address)",
                        self.prefix
                    ),
                ));
            };
            if !prefix.contains(address) {
                return Err(origin.field(
                    &field,
                    format_args!(
                        "\"{address}\" is outside the prefix \"{prefix}\" (pick an address inside it or widen the prefix)"
                    ),
                ));
            }
            let anycast = address.is_ipv6() && prefix.prefix_len() < 127;
            if (address == prefix.network() && (address.is_ipv4() || anycast))
                || Some(address) == prefix.broadcast()
            {
                return Err(origin.field(
                    &field,
                    format_args!(
                        "\"{address}\" is the network or broadcast address of \"{prefix}\" (pick a host address)"
                    ),
                ));
            }
        }
        let lacks = self
            .prefix
            .iter()
            .find(|p| m.address.iter().all(|a| !p.contains(a)));
        if let Some(p) = lacks {
            return Err(origin.field(
                &field,
                format_args!(
                    "the member has no address in \"{p}\"; in a VON with prefix = {} every member has one address per prefix (example: address = {})",
                    self.prefix,
                    example(self.prefix)
                ),
            ));
        }
        Ok(())
    }
}

/// An `address` value fitting `prefixes`, for an error message.
fn example(prefixes: VonPrefixes) -> String {
    let hosts: Vec<String> = prefixes
        .iter()
        .map(|p| match p.network() {
            std::net::IpAddr::V4(n) => std::net::Ipv4Addr::from(u32::from(n) + 1).to_string(),
            std::net::IpAddr::V6(n) => std::net::Ipv6Addr::from(u128::from(n) + 1).to_string(),
        })
        .map(|h| format!("\"{h}\""))
        .collect();
    match hosts.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", hosts.join(", ")),
    }
}

/// Fails at the second member whose `key` repeats an earlier one's.
fn unique<K: Eq + Hash + Display>(
    origin: Origin<'_>,
    members: &[Member],
    field: &str,
    key: impl Fn(&Member) -> K,
) -> Result<(), ConfigError> {
    let mut seen = HashMap::new();
    for (i, m) in members.iter().enumerate() {
        if let Some(first) = seen.insert(key(m), i) {
            return Err(origin.field(
                format_args!("member[{i}].{field}"),
                format_args!(
                    "\"{}\" is also member[{first}]'s {field} (each member needs its own)",
                    key(m)
                ),
            ));
        }
    }
    Ok(())
}
