//! The static view file: the same file on every member of a VON run without
//! a key manager ("static mode"): ON id, epoch, key, prefix and members.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::error::{Origin, parse_toml, read};
use crate::{Cipher, ConfigError, Endpoint, Epoch, HexKey, MemberId, MemberName, OnId, Prefix};

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
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its id, the frame's sender field.
    pub id: MemberId,
    /// Its name; an agent finds itself by it (`static.member`).
    pub name: MemberName,
    /// Its VON address, inside `prefix`.
    #[serde(deserialize_with = "ip_address")]
    pub address: IpAddr,
    /// Where it receives on underlay A.
    pub a: Endpoint,
    /// Where it receives on underlay B.
    pub b: Endpoint,
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
        unique(origin, &self.members, "a", |m| m.a)?;
        unique(origin, &self.members, "b", |m| m.b)?;
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
            for (field, e) in [("a", m.a), ("b", m.b)] {
                if e.addr().ip().is_unspecified() {
                    return Err(origin.field(
                        format_args!("member[{i}].{field}"),
                        format_args!(
                            "\"{e}\" cannot be reached by peers (write the member's own address on underlay {})",
                            field.to_uppercase()
                        ),
                    ));
                }
            }
            if m.a == m.b {
                return Err(origin.field(
                    format_args!("member[{i}].b"),
                    format_args!(
                        "\"{}\" is also its underlay A endpoint (A and B must be two independent networks)",
                        m.b
                    ),
                ));
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
