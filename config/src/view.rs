//! The static view file: the same file on every member of a VON run without
//! a key manager ("static mode"): ON id, epoch, key, prefix and members.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::error::{Origin, parse_toml, read};
use crate::{
    Cipher, ConfigError, Endpoint, Epoch, HexKey, MemberId, MemberName, OnId, Prefix,
    UnderlayEndpoints, UnderlayName,
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
    /// The VON's subnet; its broadcast address reaches every member.
    pub prefix: Prefix,
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
    /// Its VON address, inside `prefix`.
    #[serde(deserialize_with = "ip_address")]
    pub address: IpAddr,
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
    #[serde(deserialize_with = "ip_address")]
    address: IpAddr,
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
        unique(origin, &self.members, "address", |m| m.address)?;
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
            let prefix = self.prefix;
            if !prefix.contains(m.address) {
                return Err(origin.field(
                    format_args!("member[{i}].address"),
                    format_args!(
                        "\"{}\" is outside the prefix \"{prefix}\" (pick an address inside it or widen the prefix)",
                        m.address
                    ),
                ));
            }
            if m.address == prefix.network() || Some(m.address) == prefix.broadcast() {
                return Err(origin.field(
                    format_args!("member[{i}].address"),
                    format_args!(
                        "\"{}\" is the network or broadcast address of \"{prefix}\" (pick a host address)",
                        m.address
                    ),
                ));
            }
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

fn ip_address<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format_args!(
            "{text:?} is not an IP address (example: \"100.64.0.1\")"
        ))
    })
}
